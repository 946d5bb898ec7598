"""Zero-shot CLIP: class-name prompts as a classifier, and as the start of a trained head.

Two uses of the same text embeddings:

* `koin evaluate CLIP --zero_shot` scores a `CLIPModel` with no training: the logit of class c is
  CLIP's own `logit_scale * cos(image_embed, text_embed_c)` with the prompt "a photo of {name}.".
* `init_head_from_text` gives `CLIPForImageClassification` a text-derived head before fine-tuning
  (train.py `--zero_shot_head_init`) instead of a random one.

The head cannot copy CLIP's zero-shot classifier exactly. In transformers' source,
`CLIPForImageClassification` feeds its linear head the MEAN of the last layer's patch tokens, taken
BEFORE the vision tower's `post_layernorm` (that norm is applied only to the CLS token), and it has
no `visual_projection`; `CLIPModel` embeds an image as `visual_projection(post_layernorm(CLS))`,
L2-normalised. `init_head_from_text` therefore folds everything linear in CLIP's path into the head:

    W = s * T̂ · P · diag(γ) · (I - 11ᵀ/D)        b = (τ / n_ref) * T̂ · P · β,   s = τ / (σ_ref n_ref)

with T̂ the normalised text embeddings, P the visual projection, γ/β the post-layernorm affine,
(I - 11ᵀ/D) the layernorm's centring and τ = exp(logit_scale). The two per-image scalars of CLIP's
path (the layernorm's 1/σ(x) and the final 1/‖e(x)‖) are not linear; they are replaced by constants
measured on calibration images (by default one mean-colour image, i.e. zeros after normalisation).
For a calibration image the head's logits then equal CLIP's zero-shot logits computed with the
mean patch token in place of the CLS token; for other images they differ by those two scalars,
which change the ranking only through the small bias term. The mean patch token is not the CLS
token, so the initial head is a warm start, not CLIP's zero-shot accuracy: fine-tuning follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, CLIPForImageClassification, PreTrainedModel

from koin_hf.errors import KoinError

DEFAULT_PROMPT_TEMPLATE = "a photo of {name}."
# Top-level weight names that zero-shot needs beyond the vision tower.
_CLIP_TEXT_SIDE = ("text_model", "text_projection", "visual_projection", "logit_scale")


def format_prompts(class_names: Sequence[str], template: str) -> list[str]:
    """Fill `{name}` in the template with each class name (other braces are left alone)."""
    if "{name}" not in template:
        raise KoinError(f"--prompt_template {template!r} must contain the placeholder {{name}}.")
    return [template.replace("{name}", name) for name in class_names]


def load_dual_encoder(clip_model_or_dir: str | Path | PreTrainedModel) -> PreTrainedModel:
    """A CLIP-style model (with get_text_features / get_image_features) in eval mode."""
    if isinstance(clip_model_or_dir, PreTrainedModel):
        model = clip_model_or_dir
    else:
        model, info = AutoModel.from_pretrained(str(clip_model_or_dir), output_loading_info=True)
        # A fine-tuned CLIPForImageClassification dir also loads as CLIPModel, with a RANDOM text
        # tower and projections: refuse it instead of scoring noise.
        missing = [k for k in info.get("missing_keys", []) if k.split(".")[0] in _CLIP_TEXT_SIDE]
        if missing:
            raise KoinError(
                f"{clip_model_or_dir} lacks CLIP's text tower or projections ({len(missing)} "
                f"weights missing, e.g. {missing[0]}); zero-shot prompts need a full CLIPModel "
                "checkpoint such as openai/clip-vit-base-patch32."
            )
    if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
        raise KoinError(
            f"{clip_model_or_dir} is a {type(model).__name__}, not a CLIP-style model with text "
            "and image towers; --zero_shot needs e.g. a CLIPModel checkpoint."
        )
    return model.eval()


def _pooled(output: torch.Tensor | object) -> torch.Tensor:
    # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.inference_mode()
def zero_shot_text_embeddings(
    clip_model_or_dir: str | Path | PreTrainedModel,
    class_names: Sequence[str],
    template: str | Sequence[str] | None = DEFAULT_PROMPT_TEMPLATE,
    tokenizer=None,
) -> torch.Tensor:
    """L2-normalised text embeddings (n_classes x projection_dim), one per class name.

    Several templates are averaged (CLIP's prompt ensembling) and re-normalised. `tokenizer`
    defaults to the one saved with the model (needed when a model object is passed).
    """
    model = load_dual_encoder(clip_model_or_dir)
    if tokenizer is None:
        source = clip_model_or_dir if not isinstance(clip_model_or_dir, PreTrainedModel) else None
        source = source or model.name_or_path
        if not source:
            raise KoinError("pass tokenizer= when the CLIP model was not loaded from a directory.")
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    template = DEFAULT_PROMPT_TEMPLATE if template is None else template
    templates = [template] if isinstance(template, str) else list(template)
    max_length = getattr(
        getattr(model.config, "text_config", None), "max_position_embeddings", None
    )
    device = next(model.parameters()).device
    summed = None
    for one_template in templates:
        prompts = format_prompts(class_names, one_template)
        tokens = tokenizer(
            prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        embeds = _pooled(model.get_text_features(**tokens)).float()
        embeds = embeds / embeds.norm(dim=-1, keepdim=True)
        summed = embeds if summed is None else summed + embeds
    return (summed / summed.norm(dim=-1, keepdim=True)).cpu()


@torch.inference_mode()
def zero_shot_image_logits(
    model: PreTrainedModel, pixel_values: torch.Tensor, text_embeddings: torch.Tensor
) -> torch.Tensor:
    """CLIP's logits_per_image against precomputed (normalised) text embeddings."""
    image = _pooled(model.get_image_features(pixel_values=pixel_values)).float()
    image = image / image.norm(dim=-1, keepdim=True)
    scale = model.logit_scale.exp().float() if hasattr(model, "logit_scale") else 1.0
    return scale * image @ text_embeddings.to(image.device, image.dtype).T


def text_head_weights(
    text_embeddings: torch.Tensor,
    visual_projection: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    logit_scale: float,
    feature_std: float,
    embed_norm: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of a linear head on pre-layernorm features x (see the module docstring).

    W x + b = logit_scale * T̂ · P (γ ⊙ (x - mean(x)) / feature_std + β) / embed_norm, which is
    CLIP's zero-shot logit exactly when feature_std = σ(x) and embed_norm = ‖image embed(x)‖.
    """
    text = text_embeddings.float()
    text = text / text.norm(dim=-1, keepdim=True)
    projected = text @ visual_projection.float()  # (C, D): T̂ P
    weight = projected * ln_weight.float()  # T̂ P diag(γ)
    weight = weight - weight.mean(dim=1, keepdim=True)  # ... (I - 11ᵀ/D): the layernorm's centring
    weight = weight * (logit_scale / (feature_std * embed_norm))
    bias = (projected @ ln_bias.float()) * (logit_scale / embed_norm)
    return weight, bias


def _projection_source(
    clip_classifier: CLIPForImageClassification, clip_model: str | Path | PreTrainedModel | None
) -> PreTrainedModel:
    source = clip_model if clip_model is not None else clip_classifier.name_or_path
    if not source:
        raise KoinError(
            "init_head_from_text needs the CLIPModel checkpoint the classifier came from "
            "(its visual_projection and logit_scale): pass clip_model=."
        )
    model = load_dual_encoder(source)
    if not hasattr(model, "visual_projection"):
        raise KoinError(
            f"{source} has no visual_projection; initialise the head from a full CLIPModel checkpoint."
        )
    return model


@torch.no_grad()
def init_head_from_text(
    clip_classifier: CLIPForImageClassification,
    text_embeddings: torch.Tensor,
    clip_model: str | Path | PreTrainedModel | None = None,
    calibration_pixel_values: torch.Tensor | None = None,
) -> None:
    """Set `clip_classifier.classifier` from class text embeddings (n_classes x projection_dim).

    `clip_model` (a CLIPModel or its checkpoint; default: the checkpoint the classifier was loaded
    from) supplies the visual projection and logit scale that `CLIPForImageClassification` lacks.
    `calibration_pixel_values` (processed images) set the two scale constants; default: one
    mean-colour image. See the module docstring for the derivation.
    """
    head = clip_classifier.classifier
    if not isinstance(head, torch.nn.Linear):
        raise KoinError("the classifier has no linear head (num_labels=0?); nothing to initialise.")
    if text_embeddings.shape[0] != head.out_features:
        raise KoinError(
            f"got {text_embeddings.shape[0]} class text embeddings for a head with "
            f"{head.out_features} labels; embed the names of config.id2label in order."
        )
    projection_model = _projection_source(clip_classifier, clip_model)
    projection = projection_model.visual_projection.weight.detach().cpu()  # (proj_dim, D)
    if text_embeddings.shape[1] != projection.shape[0]:
        raise KoinError(
            f"text embeddings have {text_embeddings.shape[1]} dims but the visual projection "
            f"maps to {projection.shape[0]}; use embeddings from the same CLIP checkpoint."
        )
    logit_scale = (
        float(projection_model.logit_scale.exp())
        if hasattr(projection_model, "logit_scale")
        else 1.0
    )

    vision = clip_classifier.vision_model
    norm = vision.post_layernorm
    device = head.weight.device
    if calibration_pixel_values is None:
        size = clip_classifier.config.vision_config.image_size
        calibration_pixel_values = torch.zeros(1, 3, size, size)
    was_training = vision.training
    vision.eval()
    tokens = vision(
        pixel_values=calibration_pixel_values.to(device, head.weight.dtype)
    ).last_hidden_state
    vision.train(was_training)
    features = tokens[:, 1:, :].float().mean(dim=1).cpu()  # exactly what the head sees
    # LayerNorm's σ (biased variance + eps) and the norm of the projected, normalised feature.
    std = torch.sqrt(features.var(dim=-1, unbiased=False) + norm.eps)
    normalized = torch.nn.functional.layer_norm(
        features,
        (features.shape[-1],),
        norm.weight.float().cpu(),
        norm.bias.float().cpu(),
        norm.eps,
    )
    embed_norm = (normalized @ projection.float().T).norm(dim=-1)

    weight, bias = text_head_weights(
        text_embeddings.cpu(),
        projection,
        norm.weight.detach().cpu(),
        norm.bias.detach().cpu(),
        logit_scale,
        float(std.mean()),
        float(embed_norm.mean()),
    )
    head.weight.copy_(weight.to(head.weight.device, head.weight.dtype))
    if head.bias is not None:
        head.bias.copy_(bias.to(head.bias.device, head.bias.dtype))
