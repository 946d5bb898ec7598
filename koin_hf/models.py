"""The model-family registry: the one table of everything that differs between model families.

Nothing else in koin-hf branches on the family. A family names the transformers class, the
default checkpoint, the LoRA targets, the modules that stay trainable (and are saved) next to a
LoRA adapter, the linear-probe head, and a tiny random config for offline tests and demos.
LoRA, linear probing and parameter counting live in `koin_hf.lora` and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    BaseImageProcessor,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperImageProcessor,
)

from koin_hf import offline_models as offline
from koin_hf.errors import KoinError
from koin_hf.lora import (
    apply_lora,
    count_parameters,
    freeze_backbone,
    load_lora_adapter,
    lora_config,
    merge_lora,
)
from koin_hf.offline_models import LITE0_SOURCE, TINY_IMAGE_SIZE, lite0_checkpoint_dir

__all__ = [
    "FAMILIES",
    "LITE0_SOURCE",
    "TINY_IMAGE_SIZE",
    "ModelFamily",
    "apply_lora",
    "count_parameters",
    "family_of",
    "freeze_backbone",
    "get_family",
    "lite0_checkpoint_dir",
    "load_lora_adapter",
    "load_model_and_processor",
    "lora_config",
    "merge_lora",
]


@dataclass(frozen=True)
class ModelFamily:
    """Everything that differs between two model families; module names are matched as suffixes."""

    name: str
    model_class: type
    default_checkpoint: str
    lora_target_modules: tuple[str, ...]
    modules_to_save: tuple[str, ...]
    head_modules: tuple[str, ...]
    tiny_config: Callable[..., PretrainedConfig]
    # Builds the image processor of a tiny model; None for timm families, whose processor is
    # derived from `config.pretrained_cfg` (that is also where save_pretrained keeps it).
    tiny_processor: Callable[[int], BaseImageProcessor] | None = None
    # Transformers (position embeddings) only run at the size they were pretrained at.
    fixed_image_size: bool = False
    # timm architecture names this family covers (TimmWrapper families only).
    timm_architectures: tuple[str, ...] = ()

    @property
    def is_timm(self) -> bool:
        return bool(self.timm_architectures)


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in [
        ModelFamily(
            name="clip",
            model_class=transformers.CLIPForImageClassification,
            default_checkpoint="openai/clip-vit-base-patch32",
            lora_target_modules=("q_proj", "v_proj"),
            modules_to_save=("classifier",),
            head_modules=("classifier",),
            tiny_config=offline.tiny_clip_config,
            tiny_processor=offline.clip_processor,
            fixed_image_size=True,
        ),
        ModelFamily(
            name="vit",
            model_class=transformers.ViTForImageClassification,
            default_checkpoint="google/vit-base-patch16-224-in21k",
            # transformers 5 renamed ViT's query/value to q_proj/v_proj.
            lora_target_modules=("q_proj", "v_proj"),
            modules_to_save=("classifier",),
            head_modules=("classifier",),
            tiny_config=offline.tiny_vit_config,
            tiny_processor=offline.vit_processor,
            fixed_image_size=True,
        ),
        ModelFamily(
            name="convnext",
            model_class=transformers.ConvNextForImageClassification,
            default_checkpoint="facebook/convnext-tiny-224",
            lora_target_modules=("pwconv1", "pwconv2"),
            modules_to_save=("classifier",),  # LayerNorms carry no running statistics
            head_modules=("classifier",),
            tiny_config=offline.tiny_convnext_config,
            tiny_processor=offline.convnext_processor,
        ),
        ModelFamily(
            name="resnet",
            model_class=transformers.ResNetForImageClassification,
            default_checkpoint="microsoft/resnet-50",
            lora_target_modules=("convolution",),
            modules_to_save=("classifier", "normalization"),
            head_modules=("classifier",),
            tiny_config=offline.tiny_resnet_config,
            tiny_processor=offline.convnext_processor,
        ),
        ModelFamily(
            name="efficientnet",
            model_class=transformers.EfficientNetForImageClassification,
            default_checkpoint="google/efficientnet-b0",
            lora_target_modules=("expand_conv", "project_conv", "top_conv"),
            modules_to_save=(
                "classifier",
                "batchnorm",
                "expand_bn",
                "depthwise_norm",
                "project_bn",
                "top_bn",
            ),
            head_modules=("classifier",),
            tiny_config=offline.tiny_efficientnet_config,
            tiny_processor=offline.efficientnet_processor,
        ),
        ModelFamily(
            name="bit",
            model_class=transformers.BitForImageClassification,
            default_checkpoint="google/bit-50",
            # Weight-standardized convs: koin_hf.lora gives them an exactly mergeable LoRA.
            lora_target_modules=("conv1", "conv2", "conv3"),
            modules_to_save=("classifier",),  # GroupNorm carries no running statistics
            head_modules=("classifier",),
            tiny_config=offline.tiny_bit_config,
            tiny_processor=offline.bit_processor,
        ),
        ModelFamily(
            name="densenet",
            model_class=transformers.TimmWrapperForImageClassification,
            default_checkpoint="timm/densenet121.tv_in1k",
            lora_target_modules=("conv1",),  # 3x3 conv2 has 32 outputs: rank 16 is no saving
            modules_to_save=("classifier", "norm0", "norm1", "norm2", "norm", "norm5"),
            head_modules=("classifier",),
            tiny_config=offline.tiny_densenet_config,
            timm_architectures=("densenet",),
        ),
        ModelFamily(
            name="lite0",
            model_class=transformers.TimmWrapperForImageClassification,
            default_checkpoint=LITE0_SOURCE,
            lora_target_modules=("conv_pw", "conv_pwl", "conv_head"),
            modules_to_save=("classifier", "bn1", "bn2", "bn3"),
            head_modules=("classifier",),
            tiny_config=offline.tiny_lite0_config,
            timm_architectures=("tf_efficientnet_lite0", "efficientnet_lite0"),
        ),
    ]
}

_MODEL_TYPE_TO_FAMILY = {
    "clip": "clip",
    "clip_vision_model": "clip",
    "vit": "vit",
    "convnext": "convnext",
    "resnet": "resnet",
    "efficientnet": "efficientnet",
    "bit": "bit",
}


def _known() -> str:
    return ", ".join(FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family called `name`; a KoinError lists the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KoinError(f"Unknown model family '{name}'; known families: {_known()}.") from None


def family_of(config: PretrainedConfig) -> ModelFamily:
    """The family of a loaded config, from its model_type (or its timm architecture)."""
    model_type = getattr(config, "model_type", None)
    if model_type == "timm_wrapper":
        architecture = str(getattr(config, "architecture", "")).split(".")[0]
        for family in FAMILIES.values():
            if any(architecture.startswith(prefix) for prefix in family.timm_architectures):
                return family
        raise KoinError(
            f"The timm architecture '{architecture}' is not a supported family; "
            f"supported: {_known()}."
        )
    if model_type in _MODEL_TYPE_TO_FAMILY:
        return FAMILIES[_MODEL_TYPE_TO_FAMILY[model_type]]
    raise KoinError(
        f"The model type '{model_type}' is not a supported family; supported: {_known()}."
    )


# --------------------------------------------------------------------------------------------
# Loading


def _label_kwargs(label_names: list[str]) -> dict:
    if len(set(label_names)) != len(label_names):
        raise KoinError("Label names must be unique; got duplicates in the dataset's labels.")
    return {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def _set_timm_image_size(config: PretrainedConfig, image_size: int) -> None:
    pretrained_cfg = dict(getattr(config, "pretrained_cfg", None) or {})
    pretrained_cfg["input_size"] = [3, image_size, image_size]
    config.pretrained_cfg = pretrained_cfg


def _resized_processor(processor: BaseImageProcessor, image_size: int) -> BaseImageProcessor:
    """The same processor producing image_size x image_size inputs."""
    settings = processor.to_dict()
    size = settings.get("size") or {}
    if size.get("shortest_edge"):
        settings["size"] = {"shortest_edge": image_size}
    else:
        settings["size"] = {"height": image_size, "width": image_size}
    if settings.get("crop_size"):
        settings["crop_size"] = {"height": image_size, "width": image_size}
    settings.pop("image_processor_type", None)
    return type(processor).from_dict(settings)


def _timm_processor(config: PretrainedConfig) -> BaseImageProcessor:
    return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg)


def _tiny_model(family: ModelFamily, label_names: list[str], image_size: int | None):
    size = image_size or TINY_IMAGE_SIZE
    config = family.tiny_config(len(label_names), size)
    labels = _label_kwargs(label_names)
    config.id2label, config.label2id = labels["id2label"], labels["label2id"]
    model = family.model_class(config)
    if not family.fixed_image_size:
        offline.init_tiny_weights(model)
    processor = _timm_processor(config) if family.is_timm else family.tiny_processor(size)
    return model, processor


def _resolve(model_name_or_path: str) -> tuple[str, ModelFamily | None]:
    """(checkpoint to load, family if already known from the name)."""
    if model_name_or_path in FAMILIES:
        family = FAMILIES[model_name_or_path]
        checkpoint = family.default_checkpoint
        if checkpoint == LITE0_SOURCE:
            checkpoint = str(lite0_checkpoint_dir())
        return checkpoint, family
    if model_name_or_path == LITE0_SOURCE:
        return str(lite0_checkpoint_dir()), FAMILIES["lite0"]
    if os.path.isdir(model_name_or_path):
        if not os.path.isfile(os.path.join(model_name_or_path, "config.json")):
            raise KoinError(
                f"The folder '{model_name_or_path}' has no config.json, so it is not a saved "
                "transformers model."
            )
        return model_name_or_path, None
    if "/" not in model_name_or_path:
        raise KoinError(
            f"'{model_name_or_path}' is neither a model family, '<family>-tiny', a local folder "
            f"nor a Hub id; known families: {_known()}."
        )
    return model_name_or_path, None


def _load_failed(checkpoint: str) -> KoinError:
    return KoinError(
        f"Could not load the checkpoint '{checkpoint}' (offline, or no such Hub repo or folder?); "
        f"pass a local checkpoint folder or an offline model such as 'lite0' or 'vit-tiny'."
    )


def load_model_and_processor(
    model_name_or_path: str,
    label_names: list[str],
    *,
    ignore_mismatched_sizes: bool = True,
    seed: int | None = None,
    image_size: int | None = None,
) -> tuple[PreTrainedModel, BaseImageProcessor, ModelFamily]:
    """A classifier for `label_names`, its image processor and its family.

    `model_name_or_path` is a family name (its default checkpoint; `lite0` works offline), a
    `<family>-tiny` random model for offline tests and demos, a Hub id, or a local checkpoint
    folder. The head is re-initialized (seeded by `seed`) when its size differs, if
    `ignore_mismatched_sizes`; `image_size` overrides the processor's input size.
    """
    if not label_names:
        raise KoinError("At least one label name is needed to build a classifier.")
    if seed is not None:
        transformers.set_seed(seed)
    if model_name_or_path.endswith("-tiny"):
        family = get_family(model_name_or_path.removesuffix("-tiny"))
        model, processor = _tiny_model(family, list(label_names), image_size)
        return model, processor, family

    checkpoint, family = _resolve(model_name_or_path)
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except OSError as error:
        raise _load_failed(checkpoint) from error
    family = family or family_of(config)
    if image_size and family.fixed_image_size:
        native = getattr(getattr(config, "vision_config", config), "image_size", None)
        if native != image_size:
            raise KoinError(
                f"The {family.name} checkpoint '{checkpoint}' runs at {native} px only; "
                f"drop --image_size or set it to {native}."
            )
    try:
        model = family.model_class.from_pretrained(
            checkpoint,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            **_label_kwargs(label_names),
        )
    except OSError as error:
        raise _load_failed(checkpoint) from error
    except RuntimeError as error:
        if "ignore_mismatched_sizes" not in str(error) and "size mismatch" not in str(error):
            raise
        raise KoinError(
            f"The head of '{checkpoint}' has another number of classes than the "
            f"{len(label_names)} labels; pass --ignore_mismatched_sizes to re-initialize it."
        ) from error
    if family.is_timm:
        # TimmWrapperConfig would otherwise save the checkpoint's old `label_names`.
        model.config.label_names = list(label_names)
        if image_size:
            _set_timm_image_size(model.config, image_size)
        processor = _timm_processor(model.config)
    else:
        try:
            processor = AutoImageProcessor.from_pretrained(checkpoint)
        except OSError as error:
            raise _load_failed(checkpoint) from error
        if image_size:
            processor = _resized_processor(processor, image_size)
    return model, processor, family
