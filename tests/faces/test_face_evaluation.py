"""`koin evaluate --faces`: group photos scored by their faces, over all photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from koin_hf.cli import main
from koin_hf.evaluation.faces import group_metrics, portrait_metrics
from koin_hf.evaluation.scoring import ScoredConfig
from koin_hf.models.loading import load_model_and_processor

pytest.importorskip("ai_edge_litert")


def _scored(logits, references, image_ids) -> ScoredConfig:
    logits = np.asarray(logits, np.float32)
    references = np.asarray(references)
    return ScoredConfig("group-faces", ["a", "b", "c", "d"], ["a", "b", "c", "d"], logits,
                        references, references, list(image_ids))  # fmt: skip


def test_group_questions_by_hand():
    # photo p1 (label 0): face 0 says 1 confidently, face 1 says 0 weakly -> among yes, best no
    # photo p2 (label 2): one face, says 2 -> all yes
    # photo p3 (label 3): no face found -> a miss everywhere
    scored = _scored(
        [[0, 5, 0, 0], [1, 0.5, 0, 0], [0, 0, 3, 1]],
        [0, 0, 2],
        ["p1", "p1", "p2"],
    )
    result = group_metrics(scored, [False, True, True], photos=3)
    assert result["any_face_top1"] == pytest.approx(2 / 3)
    assert result["best_face_top1"] == pytest.approx(1 / 3)
    # face 0 ranks label 0 behind one higher logit and tied with two more: top-3 credit 2/3
    assert result["best_face_top3"] == pytest.approx((2 / 3 + 1) / 3)
    assert result["labelled_face_top1"] == pytest.approx(2 / 3)
    assert result["photos_with_face"] == 2 and result["faces"] == 3
    unknown = group_metrics(scored, [None, None, None], photos=3)
    assert unknown["labelled_face_top1"] is None
    portraits = portrait_metrics(_scored([[0, 2, 1, 0], [3, 0, 0, 0]], [2, 0], ["q1", "q2"]), 4)
    assert portraits["top1_accuracy"] == pytest.approx(1 / 4)
    assert portraits["top3_accuracy"] == pytest.approx(2 / 4)


@pytest.mark.slow
def test_evaluate_faces_writes_both_paths_side_by_side(prepared, tmp_path, capsys):
    import datasets

    names = datasets.load_dataset(str(prepared), "normal", split="test").features["label"].names
    model_dir = tmp_path / "model"
    model, processor, _ = load_model_and_processor("vit-tiny", names, seed=0)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    out = tmp_path / "eval"
    argv = ["evaluate", str(model_dir), "--dataset", str(prepared), "--faces", "--no_plots",
            "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    group = metrics["faces"]["group-faces"]
    assert group["photos"] == metrics["configs"]["group"]["n"] == 3
    assert group["labelled_face_top1"] is not None
    assert group["best_face_top1"] <= group["any_face_top1"]
    assert metrics["faces"]["normal-faces"]["photos"] == metrics["configs"]["normal"]["n"]
    report = (out / "report.md").read_text()
    assert "## Face path" in report and "group (most confident face)" in report
    assert "face path" in capsys.readouterr().out


def test_evaluate_faces_without_face_configs_is_one_line(tmp_path, capsys):
    from rawkoin import make_raw_koin

    from koin_hf.data.prepare import prepare_koin

    prepared = prepare_koin(make_raw_koin(tmp_path / "raw"), tmp_path / "data", verbose=False)
    assert prepared["configs"]
    model_dir = tmp_path / "model"
    import datasets

    names = (
        datasets.load_dataset(str(tmp_path / "data"), "normal", split="test")
        .features["label"]
        .names
    )
    model, processor, _ = load_model_and_processor("vit-tiny", names, seed=0)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    argv = ["evaluate", str(model_dir), "--dataset", str(tmp_path / "data"), "--faces",
            "--no_plots", "--output_dir", str(tmp_path / "eval")]  # fmt: skip
    assert main(argv) == 2
    assert "koin prepare RAW OUT --faces" in capsys.readouterr().err
