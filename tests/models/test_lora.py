"""LoRA, merging and linear probing on the tiny model of every family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import pipeline

from koin_hf.errors import KoinError
from koin_hf.models.loading import load_model_and_processor
from koin_hf.models.lora import (
    WeightStandardizedLoraConv2d,
    apply_lora,
    count_parameters,
    freeze_backbone,
    load_lora_adapter,
    lora_config,
    merge_lora,
)
from koin_hf.models.registry import FAMILIES, get_family

NAMES = ["Kim Minji", "Lee Jieun", "Park Seojun"]


def _batch(processor, count: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(count)
    ]
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    return pixels, torch.arange(count) % len(NAMES)


def _train(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _logits(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=pixels).logits


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, atol=1e-5 * max(scale, 1.0), rtol=1e-4)


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_lora_trains_merges_and_reloads_exactly(name: str, tmp_path: Path) -> None:
    model, processor, family = load_model_and_processor(f"{name}-tiny", NAMES, seed=0)
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)  # the untouched base, to re-attach the adapter to
    base_stats = [bn.running_mean.clone() for bn in _batchnorms(model)]
    base_head = {k: v.clone() for k, v in model.state_dict().items() if "classifier" in k}
    pixels, labels = _batch(processor)

    peft_model = apply_lora(model, family, lora_config(family))
    lora_layers = [m for m in peft_model.modules() if hasattr(m, "lora_A")]
    targets = [
        n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in family.lora_target_modules
    ]
    assert lora_layers and len(lora_layers) == len(targets)
    trainable, total = count_parameters(peft_model)
    assert 0 < trainable < total

    _train(peft_model, pixels, labels)
    trained = _logits(peft_model, pixels)

    # The adapter alone, on a fresh base: equal only if the head and every BatchNorm (trained
    # weights and running statistics) were saved through modules_to_save.
    peft_model.save_pretrained(tmp_path / "adapter")
    fresh = type(model).from_pretrained(base_dir).eval()
    _assert_same(_logits(load_lora_adapter(fresh, str(tmp_path / "adapter")), pixels), trained)

    merged = merge_lora(peft_model).eval()
    assert not any(hasattr(m, "lora_A") for m in merged.modules())
    _assert_same(_logits(merged, pixels), trained)
    merged_state = merged.state_dict()
    assert all(not torch.equal(merged_state[k], v) for k, v in base_head.items())  # head trained
    if base_stats:  # the statistics moved during training and the merged model keeps them
        merged_stats = [bn.running_mean for bn in _batchnorms(merged)]
        assert any(not torch.equal(a, b) for a, b in zip(base_stats, merged_stats, strict=True))

    merged.save_pretrained(tmp_path / "merged")
    processor.save_pretrained(tmp_path / "merged")
    reloaded = type(model).from_pretrained(tmp_path / "merged").eval()
    _assert_same(_logits(reloaded, pixels), trained)
    classifier = pipeline("image-classification", model=str(tmp_path / "merged"))
    assert {p["label"] for p in classifier(Image.new("RGB", (40, 40)), top_k=3)} == set(NAMES)


def test_bit_uses_the_exactly_mergeable_conv_lora() -> None:
    model, _, family = load_model_and_processor("bit-tiny", NAMES)
    peft_model = apply_lora(model, family, lora_config(family))
    layers = [m for m in peft_model.modules() if hasattr(m, "lora_A")]
    assert layers and all(isinstance(m, WeightStandardizedLoraConv2d) for m in layers)


def test_target_override_and_family_defaults() -> None:
    family = get_family("resnet")
    config = lora_config(family, r=4, alpha=8, dropout=0.0)
    assert set(config.target_modules) == {"convolution"}
    assert set(config.modules_to_save) == {"classifier", "normalization"}
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.0)
    vit = get_family("vit")
    assert set(lora_config(vit, target_modules=["fc1"]).target_modules) == {"fc1"}


def test_bad_targets_name_the_problem_and_valid_names() -> None:
    model, _, family = load_model_and_processor("vit-tiny", NAMES)
    with pytest.raises(KoinError, match=r"query, value name no Linear/Conv2d.*q_proj"):
        apply_lora(model, family, lora_config(family, target_modules=["query", "value"]))
    # A container (the attention block), not a layer: microsoft/LoRA #192.
    with pytest.raises(KoinError, match="attention name no Linear/Conv2d"):
        apply_lora(model, family, lora_config(family, target_modules=["attention"]))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_freeze_backbone_trains_only_the_head(name: str) -> None:
    model, processor, family = load_model_and_processor(f"{name}-tiny", NAMES, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable, total = freeze_backbone(model, family)
    head = sum(p.numel() for n, p in model.named_parameters() if "classifier" in n)
    assert trainable == head and 0 < trainable < total
    assert (trainable, total) == count_parameters(model)

    pixels, labels = _batch(processor)
    _train(model, pixels, labels, steps=2)
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    # Only head weights moved: no backbone weight and no BatchNorm statistic.
    assert changed and all("classifier" in k for k in changed)


def test_count_parameters_counts_shared_tensors_once() -> None:
    layer = nn.Linear(4, 3)
    tied = nn.Sequential(layer, layer)
    assert count_parameters(tied) == (15, 15)
    layer.bias.requires_grad = False
    assert count_parameters(tied) == (12, 15)
