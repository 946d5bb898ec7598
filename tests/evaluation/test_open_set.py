"""Open set end to end on a tiny synthetic KoIn with unknown people and a tiny random ViT.

Real files all the way: `koin synth --unknown_classes`, `koin prepare` (the `unknown` config),
embeddings cached as parquet, `koin probe` saving a model folder that `pipeline()` loads,
`koin calibrate` folding the temperature into the head, `koin predict` answering "unknown",
`koin evaluate --open_set`, `koin enroll` / `koin unenroll`. The model is random, so no accuracy
is asserted here; the numbers on the real default model are in docs/EVALUATION.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_dataset
from transformers import pipeline

from koin_hf.cli import main
from koin_hf.data.prepare import prepare_koin
from koin_hf.errors import KoinError
from koin_hf.evaluation.embeddings import (
    Embedder,
    backbone_fingerprint,
    head_parameters,
    logits_from_embeddings,
)
from koin_hf.evaluation.open_set import PROTOTYPES_FILE, OpenSetSettings, Prototypes
from koin_hf.models.loading import load_model_and_processor
from koin_hf.run_record import RunRecord
from koin_hf.synthetic.writer import generate_synthetic_koin
from koin_hf.training.probe import fit_logistic_regression, sweep_c

NUM_CLASSES, UNKNOWN = 3, 2


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("openset")
    raw = generate_synthetic_koin(
        root / "raw", num_classes=NUM_CLASSES, train_per_class=8, test_per_class=3,
        hard_per_class=3, group_per_class=1, unknown_classes=UNKNOWN, unknown_per_class=4,
        image_size="48x60", workers=1, progress=False,
    )  # fmt: skip
    prepared = root / "prepared"
    prepare_koin(raw, prepared, image_size=48, verbose=False)
    names = load_dataset(str(prepared), "normal", split="train").features["label"].names
    model, processor, _ = load_model_and_processor("vit-tiny", names, seed=0)
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    return {"root": root, "raw": raw, "prepared": prepared, "model": model_dir, "names": names}


@pytest.fixture(autouse=True)
def embeddings_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KOIN_HF_EMBEDDINGS_CACHE", str(tmp_path_factory.getbasetemp() / "emb"))


def _copy(data: dict, name: str) -> Path:
    target = data["root"] / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(data["model"], target)
    return target


def test_unknown_people_become_the_unknown_config_with_no_label(data):
    raw = data["raw"]
    unknown_ids = sorted(p.name for p in (raw / "unknown_cases" / "test").iterdir())
    assert unknown_ids == [f"{NUM_CLASSES + i:04d}" for i in range(UNKNOWN)]
    assert (raw / "unknown_classes.csv").read_text().count("\n") == UNKNOWN + 1
    unknown = load_dataset(str(data["prepared"]), "unknown", split="test")
    normal = load_dataset(str(data["prepared"]), "normal", split="test")
    assert len(unknown) == UNKNOWN * 4
    assert set(unknown["label"]) == {-1}  # datasets' "no label" value of a ClassLabel
    assert unknown.features["label"].names == normal.features["label"].names
    assert all(i.startswith("unknown_cases/test/000") for i in unknown["image_id"])
    report = json.loads((data["prepared"] / "prepare_report.json").read_text())
    assert report["configs"]["unknown"]["test"]["not_a_class"] == UNKNOWN * 4


def test_the_known_part_is_the_same_with_or_without_unknown_people(data, tmp_path):
    plain = generate_synthetic_koin(
        tmp_path / "plain", num_classes=NUM_CLASSES, train_per_class=1, test_per_class=0,
        hard_per_class=0, group_per_class=0, image_size="48x60", workers=1, progress=False,
    )  # fmt: skip
    name = "normal_cases/train/0001/img_000.jpg"
    assert (plain / name).read_bytes() == (data["raw"] / name).read_bytes()


def test_prepare_refuses_a_known_class_among_the_unknown_people(data, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(data["raw"], raw)
    shutil.copytree(raw / "normal_cases" / "test" / "0001", raw / "unknown_cases/test/0001")
    with pytest.raises(KoinError, match="names a class of normal_cases/train"):
        prepare_koin(raw, tmp_path / "out", image_size=48, verbose=False)


def test_photo_condition_replays_what_render_photo_drew(monkeypatch):
    from koin_hf.synthetic import scene

    drawn = []
    real = scene.random_look
    monkeypatch.setattr(
        scene,
        "random_look",
        lambda rng, occlusion=None: drawn.append(occlusion) or real(rng, occlusion),
    )
    for index in range(6):
        job = scene.PhotoJob(0, "hard", 1, index, (40, 50))
        drawn.clear()
        scene.render_photo(job)
        expected = {"both": "mask+hat"}.get(drawn[-1], drawn[-1])
        assert scene.photo_condition(job) == expected


def test_embeddings_are_the_head_input_cached_and_shared_by_same_backbone(data):
    normal = load_dataset(str(data["prepared"]), "normal", split="test")
    embedder = Embedder(data["model"])
    first = embedder.embed_split(normal, "normal/test")
    assert first.path.is_file() and first.features.shape == (len(normal), 32)
    # The head computes the pipeline's logits from exactly these features.
    classifier = pipeline("image-classification", model=str(data["model"]), device="cpu")
    weight, bias = head_parameters(embedder.model)
    logits = logits_from_embeddings(first.features, weight, bias)
    top = classifier(normal[0]["image"], top_k=1)[0]["label"]
    assert top == data["names"][int(logits[0].argmax())]
    # A second model with another head but the same backbone reads the same cache.
    other = _copy(data, "other-head")
    model, processor, _ = load_model_and_processor(str(other), data["names"])
    torch.nn.init.normal_(model.classifier.weight)
    model.save_pretrained(other)
    second = Embedder(other)
    assert second.fingerprint == embedder.fingerprint
    second.embed_pixels = None  # a cache hit never runs the model
    cached = second.embed_split(normal, "normal/test")
    np.testing.assert_array_equal(cached.features, first.features)
    assert cached.image_ids == first.image_ids
    # Another backbone gets another fingerprint.
    with torch.no_grad():
        next(model.vit.parameters()).add_(1.0)
    assert backbone_fingerprint(model, processor) != embedder.fingerprint


def test_logistic_regression_reaches_the_optimum_of_scikit_learns_objective():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int) + (x[:, 1] > 1)
    C = 0.316
    fit = fit_logistic_regression(x, y, 3, C, tol=1e-9)
    w = torch.tensor(fit.weight, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(fit.bias, dtype=torch.float64, requires_grad=True)
    logits = torch.tensor(x) @ w.T + b
    loss = C * torch.nn.functional.cross_entropy(logits, torch.tensor(y), reduction="sum")
    (loss + 0.5 * (w * w).sum()).backward()
    assert w.grad.abs().max() < 1e-3 and b.grad.abs().max() < 1e-3


def _objective_gradient(x, y, fit):
    """scikit-learn's objective's gradient at a fit, in the original feature space."""
    w = torch.tensor(fit.weight, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(fit.bias, dtype=torch.float64, requires_grad=True)
    logits = torch.tensor(x) @ w.T + b
    loss = fit.C * torch.nn.functional.cross_entropy(logits, torch.tensor(y), reduction="sum")
    (loss + 0.5 * (w * w).sum()).backward()
    return w.grad, b.grad


def test_logistic_regression_with_fewer_images_than_dimensions_is_fitted_in_their_span():
    # 24 images of 64 dimensions: the solver works in the 24-d row space; the weights it
    # returns must still be the optimum of the full 64-d problem, and lie in that row space.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 64))
    y = np.arange(24) % 3
    fit = fit_logistic_regression(x, y, 3, 0.5, tol=1e-10)
    assert fit.weight.shape == (3, 64)
    grad_w, grad_b = _objective_gradient(x, y, fit)
    assert grad_w.abs().max() < 1e-3 and grad_b.abs().max() < 1e-3
    residual = fit.weight - fit.weight @ np.linalg.pinv(x) @ x
    assert np.abs(residual).max() < 1e-4


def test_the_warm_started_sweep_finds_the_same_optimum_as_separate_fits():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 16))
    y = np.arange(40) % 4
    best, fits = sweep_c(x, y, x[:8], y[:8], 4, (0.1, 1.0, 10.0), tol=1e-9)
    for fit in fits:
        alone = fit_logistic_regression(x, y, 4, fit.C, tol=1e-9)
        np.testing.assert_allclose(fit.weight, alone.weight, atol=2e-3)
    assert best in fits


def test_koin_probe_saves_a_pipeline_ready_linear_probe(data, capsys):
    out = data["root"] / "probe"
    assert main(["probe", str(data["model"]), "--dataset", str(data["prepared"]), "--output_dir",
                 str(out), "--C", "0.316", "10", "--shots_per_class", "4"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "Saved a pipeline-ready model" in printed
    record = RunRecord.load(out)
    assert record.method == "linear_probe" and record.shots_per_class == 4
    assert record.train_images == NUM_CLASSES * 4
    probe = json.loads((out / "probe.json").read_text())
    assert probe["chosen_C"] in (0.316, 10.0)
    assert (out / "README.md").is_file()
    assert len(json.loads((out / "fewshot_ids.json").read_text())["image_ids"]) == 12
    # pipeline() on the folder gives the probe's own logits' ranking.
    results = json.loads((out / "all_results.json").read_text())
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    test = load_dataset(str(data["prepared"]), "normal", split="test")
    embedder = Embedder(out)
    emb = embedder.embed_split(test, "normal/test")
    weight, bias = head_parameters(embedder.model)
    logits = logits_from_embeddings(emb.features, weight, bias)
    predicted = [classifier(row["image"], top_k=1)[0]["label"] for row in test]
    assert predicted == [data["names"][i] for i in logits.argmax(axis=1)]
    accuracy = np.mean(logits.argmax(axis=1) == np.array(test["label"]))
    assert results["eval_normal_top1_accuracy"] == pytest.approx(accuracy)


def test_calibrate_then_predict_says_unknown_below_the_threshold(data, capsys):
    model = _copy(data, "calibrated")
    before = pipeline("image-classification", model=str(model), device="cpu")
    assert main(["calibrate", str(model), "--dataset", str(data["prepared"])]) == 0
    assert "temperature" in capsys.readouterr().out
    settings = OpenSetSettings.read(model)
    assert settings.score == "prototype_cosine" and settings.msp_threshold is not None
    assert (model / PROTOTYPES_FILE).is_file()
    after = pipeline("image-classification", model=str(model), device="cpu")
    files = sorted((data["raw"] / "unknown_cases" / "test").rglob("*.jpg"))[:2]
    files += sorted((data["raw"] / "normal_cases" / "test").rglob("*.jpg"))[:2]
    images = [str(f) for f in files]
    # Folding the temperature keeps every answer; only the scores change.
    assert [r[0]["label"] for r in before(images)] == [r[0]["label"] for r in after(images)]
    scores = Prototypes.load(model).scores(Embedder(model).embed_images(images))
    config = json.loads((model / "config.json").read_text())
    threshold = float(np.sort(scores)[1:3].mean())  # two below, two above
    config["koin_open_set"]["threshold"] = threshold
    (model / "config.json").write_text(json.dumps(config))
    from koin_hf.evaluation.predict import predict

    answers = predict(model, images, device="cpu")
    assert [a[0]["label"] == "unknown" for a in answers] == list(scores <= threshold)
    assert sum(a[0]["label"] == "unknown" for a in answers) == 2
    closed = predict(model, images, device="cpu", open_set=False)
    assert all(a[0]["label"] != "unknown" for a in closed)
    assert main(["predict", str(model), *images]) == 0
    assert "unknown (top score" in capsys.readouterr().out


def test_evaluate_open_set_writes_metrics_report_and_diagram(data, capsys):
    out = data["root"] / "eval"
    assert main(["evaluate", str(data["model"]), "--dataset", str(data["prepared"]),
                 "--open_set", "--no_plots", "--output_dir", str(out)]) == 0  # fmt: skip
    assert "open set:" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    open_set = metrics["open_set"]
    assert "normal" in metrics["configs"]  # the closed-set results are kept
    normal = open_set["configs"]["normal"]
    assert set(normal["auroc"]) == {"prototype_cosine", "msp", "max_logit", "head_cosine"}
    assert 0.0 <= normal["auroc"]["prototype_cosine"] <= 1.0
    assert set(normal["tar_at_far"]) == {"0.01", "0.001"}
    assert normal["ece"]["after_temperature"] == normal["ece"]["before_temperature"]  # T = 1
    conditions = set(open_set["per_condition"])
    assert {"normal", "group", "unknown"} <= conditions
    assert conditions - {"normal", "group", "unknown"} <= {"mask", "hat", "mask+hat"}
    assert (
        sum(open_set["per_condition"][c]["n"] for c in conditions - {"normal", "group", "unknown"})
        == 9
    )
    assert (out / "reliability.png").stat().st_size > 1000
    assert "## Open set: known vs unknown people" in (out / "report.md").read_text()


def test_evaluate_open_set_without_an_unknown_config_is_one_clear_error(data, tmp_path, capsys):
    plain = tmp_path / "plain"
    shutil.copytree(data["prepared"], plain)
    shutil.rmtree(plain / "unknown")
    readme = (plain / "README.md").read_text()
    (plain / "README.md").write_text(readme.replace("config_name: unknown", "config_name: gone"))
    code = main(["evaluate", str(data["model"]), "--dataset", str(plain), "--open_set"])
    assert code == 2 and "unknown_classes" in capsys.readouterr().err


def test_enroll_adds_a_person_and_unenroll_removes_them_exactly(data, capsys):
    model = _copy(data, "enrolled")
    assert main(["calibrate", str(model), "--dataset", str(data["prepared"])]) == 0
    original = (model / "model.safetensors").read_bytes()
    photos = sorted((data["raw"] / "unknown_cases" / "test" / f"{NUM_CLASSES:04d}").glob("*.jpg"))
    code = main(["enroll", str(model), "--name", "New Person", *map(str, photos[:3]),
                 "--dataset", str(data["prepared"])])  # fmt: skip
    assert code == 0 and "now knows 4 people" in capsys.readouterr().out
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"]["3"] == "New Person" and "New Person" in config["koin_enrolled"]
    assert Prototypes.load(model).rows.shape[0] == 4
    classifier = pipeline("image-classification", model=str(model), device="cpu")
    labels = {r["label"] for r in classifier(str(photos[0]), top_k=4)}
    assert labels == {*data["names"], "New Person"}
    assert main(["enroll", str(model), "--name", "New Person", str(photos[0])]) == 2
    assert "already knows" in capsys.readouterr().err
    assert main(["unenroll", str(model), "--name", "New Person"]) == 0
    after = json.loads((model / "config.json").read_text())
    assert list(after["id2label"].values()) == data["names"]
    assert Prototypes.load(model).rows.shape[0] == NUM_CLASSES
    from safetensors.torch import load

    for name, tensor in load(original).items():
        assert torch.equal(tensor, load((model / "model.safetensors").read_bytes())[name])


def test_koin_embed_caches_every_split_of_the_configs(data, capsys):
    args = ["embed", str(data["model"]), "--dataset", str(data["prepared"]), "--config", "normal"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "normal/train" in out and "normal/test" in out and "embeddings.parquet" in out
    assert main([*args[:-1], "nothing"]) == 2
    assert "no config 'nothing'" in capsys.readouterr().err
