"""`koin export --format onnx`: onnxruntime gives PyTorch's logits (<= 1e-4) on real photos for
the tiny model of every registry family, with any batch size; a folder that says what it holds;
and an export that does not match is refused, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from rawkoin import CLASS_NAMES

from koin_hf.cli import main
from koin_hf.deploy.onnx_export import export_onnx, synthetic_check_photos
from koin_hf.errors import KoinError
from koin_hf.evaluation.predict import predict
from koin_hf.evaluation.scoring import ImageScorer
from koin_hf.models.loading import load_model_and_processor
from koin_hf.models.registry import FAMILIES


def save_tiny(family: str, folder: Path) -> Path:
    model, processor, _ = load_model_and_processor(f"{family}-tiny", list(CLASS_NAMES), seed=0)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def onnx_logits(onnx_file: Path, pixel_values: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"pixel_values": pixel_values.numpy()})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Photos of the embedded synthetic KoIn (JPEG) and a half-transparent PNG."""
    folder = tmp_path_factory.mktemp("photos")
    files = []
    for index, data in enumerate(synthetic_check_photos(3)):
        files.append(folder / f"face{index}.jpg")
        files[-1].write_bytes(data)
    rgba = np.random.default_rng(1).integers(0, 256, (70, 60, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] > 128, 255, 0)
    files.append(folder / "cutout.png")
    Image.fromarray(rgba, "RGBA").save(files[-1])
    return files


def test_koin_export_writes_a_self_describing_folder_that_predicts_like_koin_predict(
    tmp_path: Path, photos: list[Path]
) -> None:
    model_dir = save_tiny("vit", tmp_path / "koin-vit")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", str(model_dir), "--format", "onnx"]) == 0
    target = tmp_path / "koin-vit-onnx"  # the default: beside the model folder
    printed = out.getvalue()
    assert "max |logit difference|" in printed
    assert f"Wrote {target / 'model.onnx'} (opset " in printed
    assert "with config.json, onnx_check.json, preprocessor_config.json" in printed
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.onnx",
        "onnx_check.json",
        "preprocessor_config.json",
    ]
    config = json.loads((target / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(3)] == list(CLASS_NAMES)
    check = json.loads((target / "onnx_check.json").read_text())
    assert check["max_abs_diff"] <= 1e-4 and check["same_top1"] and check["num_check_images"] == 8
    assert str(tmp_path) not in (target / "onnx_check.json").read_text()  # no local paths

    # The ONNX folder alone (its own config and processor) ranks a photo as `koin predict` does.
    from transformers import AutoImageProcessor

    from koin_hf.evaluation.scoring import preprocess_images

    processor = AutoImageProcessor.from_pretrained(target)
    pixel_values = preprocess_images(processor, [str(p) for p in photos])
    probabilities = softmax(onnx_logits(target / "model.onnx", pixel_values))
    for row, ranked in zip(probabilities, predict(model_dir, photos), strict=True):
        order = np.argsort(-row, kind="stable")[:3]
        assert [config["id2label"][str(i)] for i in order] == [p["label"] for p in ranked]
        assert row[order] == pytest.approx([p["score"] for p in ranked], abs=1e-5)

    # Exporting again replaces the earlier export; a folder holding other files is refused.
    assert main(["export", str(model_dir), "--output_dir", str(target)]) == 0
    (target / "notes.txt").write_text("mine")
    assert main(["export", str(model_dir), "--output_dir", str(target)]) == 2


def test_an_export_above_the_tolerance_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    model_dir = save_tiny("vit", tmp_path / "m")
    with pytest.raises(KoinError, match="differ from PyTorch's by up to .* not written"):
        # float32 ViT logits through two runtimes differ by ~1e-8, never by 1e-30
        export_onnx(model_dir, tmp_path / "out", tolerance=1e-30)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left behind


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"vit"}))
def test_every_family_exports_with_pytorchs_logits(
    family: str, tmp_path: Path, photos: list[Path]
) -> None:
    model_dir = save_tiny(family, tmp_path / family)
    result = export_onnx(model_dir, tmp_path / "onnx", check_images=photos)
    assert result.max_abs_diff <= 1e-4 and result.num_check_images == len(photos)
    # Any batch size: a batch of 5 (the export traced 2) and of 1, against PyTorch's forward.
    scorer = ImageScorer(model_dir, device="cpu")
    pixel_values = scorer.preprocess([str(p) for p in [*photos, photos[0]]])
    reference = scorer.forward(pixel_values)
    assert np.abs(onnx_logits(Path(result.onnx_file), pixel_values) - reference).max() <= 1e-4
    single = onnx_logits(Path(result.onnx_file), pixel_values[:1])
    assert np.abs(single - reference[:1]).max() <= 1e-4


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path: Path) -> None:
    import sys

    from koin_hf.deploy.demo import import_gradio

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import` sees when not installed
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(KoinError, match=r"koin-hf\[onnx\].*onnxruntime is missing"):
        export_onnx(tmp_path, tmp_path / "out")
    with pytest.raises(KoinError, match=r"koin-hf\[demo\]"):
        import_gradio()
