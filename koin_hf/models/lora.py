"""LoRA, linear probing and parameter counts for the model families of the registry.

Three pitfalls shape this module: LoRA targets must name Linear/Conv layers (checked here, with
the valid names in the error), the head and every BatchNorm must be in `modules_to_save` or
they are lost with the adapter, and what users load with pipeline() must be the merged model.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import Conv2d as LoraConv2d
from torch import nn
from transformers import PreTrainedModel
from transformers.models.bit.modeling_bit import WeightStandardizedConv2d

from koin_hf.errors import KoinError
from koin_hf.models.registry import ModelFamily

logger = logging.getLogger(__name__)

_LORA_LAYER_TYPES = (nn.Linear, nn.Conv2d)


class WeightStandardizedLoraConv2d(LoraConv2d):
    """LoRA for BiT's weight-standardized convs, applied to the weight *before* standardizing.

    PEFT's stock conv LoRA adds `B(A(x))` after the layer (and builds A and B as weight-standardized
    convs themselves), which no weight of a standardizing conv can reproduce, so merging would
    change the model. Here the layer computes `conv(x, standardize(W + BA))`; merging writes
    `W + BA` into the weight, which is exactly the trained function. Input dropout has no
    weight-space equivalent and is not applied.
    """

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: LoraConfig, **_):
        if config.use_dora or config.lora_bias:
            raise KoinError("DoRA and lora_bias are not supported on BiT's standardized convs.")
        base = self.get_base_layer()
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        self.lora_dropout[adapter_name] = nn.Identity()
        self.lora_A[adapter_name] = nn.Conv2d(
            self.in_features, r, base.kernel_size, base.stride, base.padding, bias=False
        )
        self.lora_B[adapter_name] = nn.Conv2d(r, self.out_features, 1, 1, bias=False)
        self.lora_bias[adapter_name] = False
        self.scaling[adapter_name] = lora_alpha / (r**0.5 if config.use_rslora else r)
        self.use_rslora[adapter_name] = config.use_rslora
        self.use_dora[adapter_name] = False
        self.reset_lora_parameters(adapter_name, config.init_lora_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapters = [name for name in self.active_adapters if name in self.lora_A]
        if self.disable_adapters and self.merged:
            self.unmerge()
        if self.disable_adapters or self.merged or not adapters:
            return self.base_layer(x, *args, **kwargs)
        base = self.get_base_layer()
        weight = base.weight + sum(self.get_delta_weight(name) for name in adapters)
        # Same computation as WeightStandardizedConv2d.forward, on the adapted weight.
        if base.pad is not None:
            x = base.pad(x)
        flat = weight.reshape(1, base.out_channels, -1)
        standardized = F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=base.eps)
        return F.conv2d(
            x,
            standardized.reshape_as(weight),
            base.bias,
            base.stride,
            base.padding,
            base.dilation,
            base.groups,
        )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor counted once."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def _matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def _lora_candidates(model: nn.Module, limit: int = 8) -> list[str]:
    names = []
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        if isinstance(module, _LORA_LAYER_TYPES) and short not in names and not short.isdigit():
            names.append(short)
    return names[:limit]


def _check_targets(model: nn.Module, targets: list[str]) -> None:
    """Every target must name at least one layer, and only Linear/Conv2d layers."""
    modules = list(model.named_modules())
    missing, containers = [], []
    for target in targets:
        matched = [module for name, module in modules if _matches(name, target)]
        if not matched:
            missing.append(target)
        elif not all(isinstance(module, _LORA_LAYER_TYPES) for module in matched):
            containers.append(target)
    if missing or containers:
        bad = ", ".join(missing + containers)
        raise KoinError(
            f"LoRA target modules {bad} name no Linear/Conv2d layer of "
            f"{type(model).__name__}; valid names include: {', '.join(_lora_candidates(model))}."
        )


def _check_running_stats_saved(model: nn.Module, modules_to_save: list[str]) -> None:
    """BatchNorm statistics change during training and are lost unless saved with the adapter."""
    unsaved = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not any(name.endswith(target) for target in modules_to_save)
    ]
    if unsaved:
        logger.warning("BatchNorm layers not in modules_to_save (stats will be lost): %s", unsaved)


def lora_config(
    family: ModelFamily,
    r: int = 16,
    alpha: int = 16,
    dropout: float = 0.1,
    target_modules: list[str] | tuple[str, ...] | None = None,
) -> LoraConfig:
    """A LoraConfig with the family's targets (or `target_modules`) and its modules_to_save."""
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules or family.lora_target_modules),
        modules_to_save=list(family.modules_to_save),
    )
    config._register_custom_module({WeightStandardizedConv2d: WeightStandardizedLoraConv2d})
    return config


def apply_lora(model: PreTrainedModel, family: ModelFamily, config: LoraConfig) -> PeftModel:
    """Wrap `model` with LoRA after checking that the targets exist; logs the trainable share."""
    targets = config.target_modules
    if not isinstance(targets, str):  # a string is PEFT's regex form, left to PEFT
        targets = ", ".join(sorted(targets))
        _check_targets(model, sorted(config.target_modules))
    _check_running_stats_saved(model, list(config.modules_to_save or []))
    if not config._custom_modules:
        config._register_custom_module({WeightStandardizedConv2d: WeightStandardizedLoraConv2d})
    peft_model = get_peft_model(model, config)
    trainable, total = count_parameters(peft_model)
    logger.info(
        "LoRA on %s (%s): %d of %d parameters trainable (%.2f%%)",
        family.name,
        targets,
        trainable,
        total,
        100 * trainable / total,
    )
    return peft_model


def load_lora_adapter(model: PreTrainedModel, adapter_dir: str, **kwargs: Any) -> PeftModel:
    """Load a saved adapter onto its base model (re-registering BiT's standardized-conv LoRA)."""
    config = LoraConfig.from_pretrained(adapter_dir)
    config._register_custom_module({WeightStandardizedConv2d: WeightStandardizedLoraConv2d})
    return PeftModel.from_pretrained(model, adapter_dir, config=config, **kwargs)


def merge_lora(peft_model: PeftModel) -> PreTrainedModel:
    """The plain transformers model with the LoRA weights merged in and the trained head/norms.

    merge_and_unload swaps every modules_to_save wrapper for its trained copy, so the result
    saves and loads like any checkpoint (pipeline() never sees an adapter).
    """
    merged = peft_model.merge_and_unload()
    leftovers = [
        name for name, _ in merged.named_modules() if "lora_" in name or "modules_to_save" in name
    ]
    if leftovers:
        raise RuntimeError(f"merge_and_unload left PEFT modules behind: {leftovers[:3]}")
    return merged


def _keep_eval_mode(module: nn.Module, _inputs: tuple) -> None:
    module.training = False


def freeze_backbone(model: nn.Module, family: ModelFamily) -> tuple[int, int]:
    """Linear probe: only the head stays trainable; returns (trainable, total) parameter counts.

    Frozen BatchNorm layers are also held in eval mode (even under Trainer's model.train()), so
    the backbone's features and running statistics stay exactly the pretrained ones.
    """
    head_parameters = set()
    for name, module in model.named_modules():
        if any(_matches(name, head) for head in family.head_modules):
            head_parameters.update(id(p) for p in module.parameters())
    if not head_parameters:
        raise KoinError(
            f"No head module {', '.join(family.head_modules)} in {type(model).__name__} to train."
        )
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in head_parameters
    for module in model.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        in_head = any(id(p) in head_parameters for p in module.parameters())
        if is_norm and not in_head and not getattr(module, "_koin_frozen", False):
            module.register_forward_pre_hook(_keep_eval_mode)
            module._koin_frozen = True
    return count_parameters(model)
