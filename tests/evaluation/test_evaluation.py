"""`koin evaluate` / `koin predict` end to end: a tiny saved ViT on a tiny prepared KoIn folder.

The dataset is real parquet with README YAML configs, loaded by `datasets.load_dataset`; the model
is a real (random) ViT saved to disk and loaded the way `pipeline()` loads it. Expected numbers are
computed here independently: one image at a time through the model, then numpy ranking.
"""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value, load_dataset
from PIL import Image as PILImage
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    pipeline,
)

from koin_hf.cli import main
from koin_hf.errors import KoinError
from koin_hf.evaluation.run import evaluate_model
from koin_hf.evaluation.scoring import match_labels
from koin_hf.models.loading import load_model_and_processor
from koin_hf.run_record import RunRecord

# One Hangul name (stored NFC in the dataset, NFD in the model) exercises name normalisation and
# the plots' font fallback; the model also knows one label that is not a dataset class.
CLASS_NAMES = ["Kim Min-ji", "Lee Seo-yeon", "Park Ji-hoon", "정하늘"]
IMAGES_PER_CLASS = {"normal": 5, "hard": 4, "group": 2}


def jpeg_bytes(rng: np.random.Generator, label: int) -> bytes:
    base = np.array([60 * label, 255 - 50 * label, 40 + 40 * label], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 40, size=(40, 40, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_prepared_koin(root: Path, configs=IMAGES_PER_CLASS, names=CLASS_NAMES) -> Path:
    """A prepared KoIn folder: <config>/test-00000-of-00001.parquet + README.md `configs:`."""
    features = Features(
        {"image": Image(), "label": ClassLabel(names=names), "image_id": Value("string")}
    )
    rng = np.random.default_rng(0)
    yaml = ["---", "configs:"]
    for config, per_class in configs.items():
        rows = {"image": [], "label": [], "image_id": []}
        for label in range(len(names)):
            for i in range(per_class):
                rows["image"].append({"bytes": jpeg_bytes(rng, label), "path": None})
                rows["label"].append(label)
                rows["image_id"].append(f"{config}_cases/test/{label:04d}/img_{i}.jpg")
        (root / config).mkdir(parents=True, exist_ok=True)
        data = Dataset.from_dict(rows, features=features)
        data.to_parquet(root / config / "test-00000-of-00001.parquet")
        yaml += [f"- config_name: {config}", "  data_files:", "  - split: test"]
        yaml += [f"    path: {config}/test-*"]
    (root / "README.md").write_text("\n".join([*yaml, "---", "# tiny KoIn", ""]), encoding="utf-8")
    return root


def write_tiny_vit(root: Path, labels: list[str], seed: int = 0) -> Path:
    """The registry's random `vit-tiny` with these labels, saved like a trained model."""
    model, processor, _ = load_model_and_processor("vit-tiny", labels, seed=seed)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


# The model's labels: another order than the dataset's, the Hangul name decomposed, and one extra.
MODEL_LABELS = [
    "Park Ji-hoon",
    unicodedata.normalize("NFD", "정하늘"),
    "Not In Dataset",
    "Kim Min-ji",
    "Lee Seo-yeon",
]


@pytest.fixture(scope="module")
def koin_dir(tmp_path_factory) -> Path:
    return write_prepared_koin(tmp_path_factory.mktemp("koin"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_vit(tmp_path_factory.mktemp("vit"), MODEL_LABELS)


@pytest.fixture(scope="module")
def evaluated(koin_dir, model_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("eval")
    results = evaluate_model(model_dir, str(koin_dir), None, 7, output_dir, device="cpu")
    return results, output_dir


def direct_logits(model_dir: Path, images) -> np.ndarray:
    """One image at a time, processor + model, no koin-hf code."""
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    rows = []
    with torch.no_grad():
        for image in images:
            inputs = processor(images=image.convert("RGB"), return_tensors="pt")
            rows.append(model(**inputs).logits[0].numpy())
    return np.stack(rows)


def test_prepared_fixture_loads_with_class_labels(koin_dir):
    hard = load_dataset(str(koin_dir), "hard", split="test")
    assert hard.features["label"] == ClassLabel(names=CLASS_NAMES)
    assert len(hard) == len(CLASS_NAMES) * IMAGES_PER_CLASS["hard"]


def test_metrics_equal_a_direct_computation(evaluated, koin_dir, model_dir):
    results, _ = evaluated
    assert list(results["configs"]) == ["normal", "hard", "group"]
    position = {unicodedata.normalize("NFC", n): i for i, n in enumerate(MODEL_LABELS)}
    for config, per_class in IMAGES_PER_CLASS.items():
        data = load_dataset(str(koin_dir), config, split="test")
        logits = direct_logits(model_dir, data["image"])
        truth = np.array([position[CLASS_NAMES[label]] for label in data["label"]])
        # Random float logits have no ties: rank = how many labels score strictly higher.
        rank = (logits > logits[np.arange(len(truth)), truth][:, None]).sum(axis=1)
        got = results["configs"][config]
        assert got["n"] == len(CLASS_NAMES) * per_class
        assert got["top1_accuracy"] == pytest.approx(np.mean(rank < 1), abs=1e-9)
        assert got["top3_accuracy"] == pytest.approx(np.mean(rank < 3), abs=1e-9)
        labels = np.array(data["label"])
        for index, name in enumerate(CLASS_NAMES):
            expected = np.mean(rank[labels == index] < 1)
            assert got["per_class"][name]["top1_accuracy"] == pytest.approx(expected, abs=1e-9)
            assert got["per_class"][name]["n"] == per_class


def test_robustness_drops(evaluated):
    results, _ = evaluated
    configs = results["configs"]
    for shifted in ("hard", "group"):
        for metric in ("top1_accuracy", "top3_accuracy"):
            entry = results["robustness"][f"normal->{shifted}"][metric]
            a, b = configs["normal"][metric], configs[shifted][metric]
            assert entry["absolute_drop_points"] == pytest.approx(100 * (a - b))
            if a > 0:
                assert entry["relative_drop"] == pytest.approx((a - b) / a)


def test_output_files(evaluated):
    results, output_dir = evaluated
    on_disk = json.loads((output_dir / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["label_matching"]["extra_model_labels"] == ["Not In Dataset"]
    for name in ["report.md", "per_class_normal_vs_hard.png"] + [
        f"confusion_{c}.png" for c in IMAGES_PER_CLASS
    ]:
        assert (output_dir / name).stat().st_size > 1000, name
    report = (output_dir / "report.md").read_text(encoding="utf-8")
    assert "71.81%" in report and "91.70%" in report and "52.68%" in report
    assert "NOT produced by this run" in report
    normal_top1 = 100 * results["configs"]["normal"]["top1_accuracy"]
    assert f"{normal_top1:.2f}%" in report
    # A random 5-way model surely errs on some hard image, so the gallery exists.
    assert (output_dir / "errors_hard.png").stat().st_size > 1000
    assert (output_dir / "predictions_hard.csv").read_text(encoding="utf-8").count("\n") == 17


def test_results_equal_pipeline_predictions(evaluated, koin_dir, model_dir):
    _, output_dir = evaluated
    data = load_dataset(str(koin_dir), "hard", split="test")
    classifier = pipeline("image-classification", model=str(model_dir), device="cpu")
    expected = classifier(list(data["image"][:6]), top_k=3)
    lines = (output_dir / "predictions_hard.csv").read_text(encoding="utf-8").splitlines()[1:7]
    for line, predictions in zip(lines, expected, strict=True):
        cells = line.split(",")
        assert cells[3::2] == [p["label"] for p in predictions]
        assert [float(s) for s in cells[4::2]] == pytest.approx(
            [p["score"] for p in predictions], abs=1e-5
        )


def test_missing_config_is_skipped_unless_asked(tmp_path, model_dir, capsys):
    koin = write_prepared_koin(tmp_path / "koin", {"normal": 1, "hard": 1})
    results = evaluate_model(model_dir, str(koin), None, 4, None, device="cpu")
    assert list(results["configs"]) == ["normal", "hard"]
    assert "group" in results["skipped_configs"]
    assert "note: skipping group" in capsys.readouterr().out
    with pytest.raises(KoinError, match="no 'group' config"):
        evaluate_model(model_dir, str(koin), ["normal", "group"], 4, None, device="cpu")


def test_labels_not_covering_the_dataset_name_the_missing_classes(tmp_path, koin_dir):
    model = write_tiny_vit(tmp_path / "m", ["Kim Min-ji", "Park Ji-hoon", "Someone", "Else"])
    with pytest.raises(KoinError, match=r"2 of 4 classes missing.*'Lee Seo-yeon', '정하늘'"):
        evaluate_model(model, str(koin_dir), ["hard"], 4, None, device="cpu")
    with pytest.raises(KoinError, match="generic LABEL_i"):
        match_labels([f"LABEL_{i}" for i in range(4)], CLASS_NAMES)


def test_cli_evaluate_and_predict(tmp_path, koin_dir, model_dir, evaluated, capsys):
    out = tmp_path / "out"
    code = main(
        ["evaluate", str(model_dir), "--dataset", str(koin_dir), "--configs", "hard", "--output_dir", str(out), "--batch_size", "5", "--num_workers", "1", "--no-plots"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "hard" in printed and "top-1" in printed
    hard = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["configs"]["hard"]
    # Another batch size, preprocessing in a worker process: the same numbers.
    assert hard == evaluated[0]["configs"]["hard"]

    images = []
    for i, label in enumerate((0, 2)):
        path = tmp_path / f"face_{i}.jpg"
        path.write_bytes(jpeg_bytes(np.random.default_rng(i), label))
        images.append(str(path))
    assert main(["predict", str(model_dir), *images, "--top_k", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    classifier = pipeline("image-classification", model=str(model_dir), device="cpu")
    for i, path in enumerate(images):
        block = printed[4 * i : 4 * i + 4]
        assert block[0] == path
        expected = classifier(path, top_k=3)
        assert [line.split()[1:-1] for line in block[1:]] == [p["label"].split() for p in expected]

    assert main(["predict", str(model_dir), str(tmp_path / "nope.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_evaluate_finds_the_training_dataset(tmp_path, koin_dir, model_dir, monkeypatch):
    import shutil

    model = shutil.copytree(model_dir, tmp_path / "trained")
    RunRecord(family="vit", method="full", data_args={"dataset_name": str(koin_dir)}).save(model)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(model), "--configs", "hard", "--no-plots"]) == 0
    outputs = list((tmp_path / "koin_eval").glob("*/metrics.json"))
    assert len(outputs) == 1 and not (model / "koin_eval").exists()
    assert json.loads(outputs[0].read_text(encoding="utf-8"))["configs"]["hard"]["n"] == 16
    report = (outputs[0].parent / "report.md").read_text(encoding="utf-8")
    assert "| method | full |" in report
    assert main(["evaluate", str(model_dir), "--configs", "hard"]) == 2  # no record, no --dataset


@pytest.mark.parametrize("kind", ["missing folder", "a file", "corrupt record"])
def test_cli_names_a_bad_model_before_loading_any_data(tmp_path, capsys, kind):
    if kind == "missing folder":
        model, expected = tmp_path / "no-such-model", "not found: no such folder, and not a Hub id"
    elif kind == "a file":
        model, expected = tmp_path / "weights.bin", "is a file: pass a model folder"
        model.write_bytes(b"\0")
    else:
        model, expected = tmp_path / "model", "pass --dataset: cannot read"
        model.mkdir()
        (model / "koin_training.json").write_text("{not json", encoding="utf-8")
    assert main(["evaluate", str(model)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- plots and report


def test_report_has_no_local_paths_and_no_literal_none(evaluated, koin_dir, model_dir):
    results, output_dir = evaluated
    report = (output_dir / "report.md").read_text(encoding="utf-8")
    for local in (str(koin_dir), str(model_dir), str(Path.home()), "/tmp/"):
        assert local not in report, local
    assert "None" not in report
    assert f"`{model_dir.name} (local folder)`" in report


def test_display_location_keeps_hub_ids_and_names_local_folders(tmp_path):
    from koin_hf.evaluation.report import display_location

    assert display_location("google/vit-base-patch16-224") == "google/vit-base-patch16-224"
    assert display_location(tmp_path / "koin-lite0") == "koin-lite0 (local folder)"
    assert display_location(None) == "–"


def test_confusion_title_names_model_and_accuracy_and_legend_leaves_the_bars_free(tmp_path):
    from koin_hf.evaluation.plots import plot_confusion, plot_per_class
    from koin_hf.evaluation.scoring import ScoredConfig

    names = [f"Person {i}" for i in range(12)]
    rng = np.random.default_rng(0)
    scored = ScoredConfig("hard", names, names, rng.normal(size=(24, 12)).astype(np.float32),
                          np.arange(24) % 12, np.arange(24) % 12)  # fmt: skip
    fig = plot_confusion(scored, tmp_path / "c.png", model_name="koin-lite0", top1_accuracy=0.575)
    assert fig.axes[0].get_title().startswith("koin-lite0: hard (24 images, top-1 57.5%)")

    # Every class at 100% on normal: the longest bars, where a legend inside the axes sat.
    per_class = {
        config: {"per_class": {n: {"top1_accuracy": value} for n in names}}
        for config, value in (("normal", 1.0), ("hard", 0.9))
    }
    fig = plot_per_class(per_class, names, tmp_path / "p.png")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    for bar in ax.patches:
        assert not legend.overlaps(bar.get_window_extent(renderer))


def test_true_rank_is_where_pipeline_puts_the_true_name():
    from koin_hf.evaluation.plots import true_ranks
    from koin_hf.evaluation.scoring import ScoredConfig

    logits = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 5.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    scored = ScoredConfig("hard", list("abcd"), list("abcd"), logits, np.array([0, 3, 1]),
                          np.array([0, 3, 1]))  # fmt: skip
    # a: top; d: behind c and (tied, listed first) b; b: tied with a, listed after it.
    assert true_ranks(scored).tolist() == [1, 3, 2]
