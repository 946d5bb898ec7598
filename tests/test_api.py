"""The public Python API: each stage as one function of `koin_hf`, end to end on tiny data."""

from __future__ import annotations

from pathlib import Path

import pytest
from rawkoin import CLASS_NAMES, make_raw_koin

import koin_hf


@pytest.mark.slow
def test_prepare_load_train_evaluate_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    raw = make_raw_koin(
        tmp_path / "raw",
        per_split={"normal_cases/train": 6, "normal_cases/test": 2, "hard_cases/test": 2},
    )
    data = koin_hf.prepare(raw, tmp_path / "koin")
    hard = koin_hf.load(data, "hard", split="test")
    assert hard.features["label"].names == list(CLASS_NAMES)

    out = tmp_path / "model"
    metrics = koin_hf.train(
        model_name_or_path="vit-tiny",
        dataset_name=str(data),
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        dataloader_num_workers=0,
        eval_config_names=["normal", "hard"],
    )
    assert 0.0 <= metrics["eval_hard_top1_accuracy"] <= 1.0

    # The dataset comes from the model's run record when none is named.
    results = koin_hf.evaluate(out, configs=["hard"], output_dir=tmp_path / "report", plots=False)
    assert results["configs"]["hard"]["n"] == len(hard)
    assert results["configs"]["hard"]["top1_accuracy"] == pytest.approx(
        metrics["eval_hard_top1_accuracy"]
    )
    assert (tmp_path / "report" / "report.md").is_file()

    image = tmp_path / "photo.png"
    hard[0]["image"].save(image)
    (ranked,) = koin_hf.predict(out, [image], top_k=2)
    assert len(ranked) == 2 and {entry["label"] for entry in ranked} <= set(CLASS_NAMES)


def test_train_keywords_become_flags_and_errors_stay_one_sentence(tmp_path: Path):
    with pytest.raises(koin_hf.KoinError, match="did you mean --learning_rate"):
        koin_hf.train(learning_rat=0.1, output_dir=str(tmp_path))
    with pytest.raises(koin_hf.KoinError, match="pass dataset="):
        koin_hf.evaluate(tmp_path)  # no run record to find the dataset in
