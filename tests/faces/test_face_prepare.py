"""`koin prepare --faces`: face configs beside the whole-photo ones, checked against the records
koin synth writes; photos without a face are reported and stay in the whole-photo configs."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from koin_hf.cli import main
from koin_hf.data.prepare import REPORT_FILE
from koin_hf.errors import KoinError
from koin_hf.faces.detection import FACES_RECORD_FILE, iou, read_face_records
from koin_hf.faces.prepare import make_face_configs
from koin_hf.synthetic.writer import generate_synthetic_koin

pytest.importorskip("ai_edge_litert")
FACE_CONFIGS = ["normal-faces", "hard-faces", "group-faces"]


def _load(folder: Path, config: str, split: str) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), config, split=split)


def test_face_configs_share_the_classes_and_join_back_to_their_photos(raw, prepared):
    assert set(FACE_CONFIGS) <= set(datasets.get_dataset_config_names(str(prepared)))
    names = _load(prepared, "normal", "train").features["label"].names
    records = read_face_records(raw / FACES_RECORD_FILE)
    for config, split in [
        ("normal-faces", "train"),
        ("hard-faces", "test"),
        ("group-faces", "test"),
    ]:
        faces = _load(prepared, config, split)
        whole = _load(prepared, config.removesuffix("-faces"), split)
        assert faces.features["label"].names == names
        label_of = dict(zip(whole["image_id"], whole["label"], strict=True))
        for row in faces:
            assert row["label"] == label_of[row["image_id"]]
            assert row["image"].size == (128, 128)
            width, height = records[row["image_id"]]["size"]
            x0, y0, x1, y1 = row["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert 0.5 <= row["score"] <= 1.0
            assert row["labelled"] is not None  # the records say which face is whose


def test_portrait_rows_are_the_labelled_face_and_group_rows_every_face(raw, prepared):
    records = read_face_records(raw / FACES_RECORD_FILE)
    normal = _load(prepared, "normal-faces", "train")
    assert len(set(normal["image_id"])) == len(normal)  # one face per portrait
    for row in normal:
        record = records[row["image_id"]]
        truth = record["faces"][record["labelled"]]["box"]
        assert row["labelled"] and iou(tuple(row["box"]), tuple(truth)) >= 0.3
    group = _load(prepared, "group-faces", "test")
    per_photo: dict[str, list[dict]] = {}
    for row in group:
        per_photo.setdefault(row["image_id"], []).append(row)
    assert len(per_photo) == 3
    for image_id, rows in per_photo.items():
        assert [r["face_index"] for r in rows] == list(range(len(rows)))
        assert len(rows) >= len(records[image_id]["faces"]) - 1
        assert sum(r["labelled"] for r in rows) <= 1


def test_photos_without_a_face_are_reported_and_kept(prepared):
    report = json.loads((prepared / REPORT_FILE).read_text())
    faces = report["faces"]
    assert faces["detector"] == "blazeface" and faces["records"] == FACES_RECORD_FILE
    missing = {r["path"]: r["reason"] for r in faces["no_face"]}
    assert missing["normal_cases/train/0000/wall.jpg"] == "no face found"
    assert "normal_cases/train/0000/wall.jpg" in _load(prepared, "normal", "train")["image_id"]
    kept = set(_load(prepared, "normal-faces", "train")["image_id"])
    assert not kept & set(missing)
    counts = faces["counts"]["normal-faces"]["train"]
    assert counts["photos"] == 7 and counts["faces"] + counts["no_face"] == 7
    assert report["configs"]["normal-faces"]["train"]["images"] == counts["faces"]
    assert "normal-faces" in (prepared / "README.md").read_text()


def test_recorded_boxes_give_exactly_the_drawn_faces(raw, tmp_path):
    out = tmp_path / "koin"
    argv = ["prepare", str(raw), str(out), "--faces", "--face_detector", "recorded"]
    assert main([*argv, "--image_size", "64"]) == 0
    records = read_face_records(raw / FACES_RECORD_FILE)
    group = _load(out, "group-faces", "test")
    group_records = [r for r in records.values() if r["image_id"].startswith("Group_cases")]
    assert len(group) == sum(len(r["faces"]) for r in group_records)
    assert sum(group["labelled"]) == len(group_records)
    report = json.loads((out / REPORT_FILE).read_text())
    assert [r["path"] for r in report["faces"]["no_face"]] == ["normal_cases/train/0000/wall.jpg"]


def test_recorded_without_records_and_unknown_detectors_are_refused(tmp_path):
    from koin_hf.data.prepare import prepare_koin

    raw = generate_synthetic_koin(
        tmp_path / "raw",
        num_classes=2,
        train_per_class=1,
        test_per_class=0,
        hard_per_class=0,
        group_per_class=0,
        progress=False,
    )
    (raw / FACES_RECORD_FILE).unlink()
    with pytest.raises(KoinError, match="faces.jsonl"):
        prepare_koin(raw, tmp_path / "out", extra_configs=make_face_configs(detector="recorded"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(KoinError, match="unknown face detector"):
        make_face_configs(detector="retinaface")


@pytest.mark.slow
def test_train_py_trains_on_normal_faces(prepared, tmp_path, monkeypatch):
    from koin_hf.training.run import main as train_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "model"
    argv = ["--model_name_or_path", "vit-tiny", "--dataset_name", str(prepared),
            "--dataset_config_name", "normal-faces", "--eval_config_names", "normal-faces",
            "hard-faces", "--output_dir", str(out), "--max_steps", "1",
            "--per_device_train_batch_size", "2"]  # fmt: skip
    assert train_main(argv) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert "eval_normal-faces_top1_accuracy" in results
    assert "eval_hard-faces_top1_accuracy" in results


def test_phone_photos_are_detected_reduced_and_boxed_in_full_size_pixels(tmp_path):
    """A 1080x1350 photo: detection on a reduced decode, boxes and labels in the file's pixels."""
    from koin_hf.faces.detection import get_detector
    from koin_hf.faces.prepare import _photo_rows
    from koin_hf.synthetic.writer import iter_photos

    photo = next(iter(iter_photos(2, 4, {"group": 1}, image_size="phone")))
    path = tmp_path / "group.jpg"
    photo.image.save(path, quality=92)
    record = photo.face_record()
    rows, reason = _photo_rows(
        path, photo.relpath, 0, "group", get_detector(), record, 96, 640, 0.4, None
    )
    assert reason is None and len(rows) >= len(photo.faces) - 1
    labelled = [row for row in rows if row["labelled"]]
    assert len(labelled) == 1
    truth = photo.faces[photo.labelled].box
    assert iou(tuple(labelled[0]["box"]), truth) >= 0.3
    assert all(row["box"][2] <= 1080 and row["box"][3] <= 1350 for row in rows)
    assert max(row["box"][2] for row in rows) > 540  # full-size pixels, not the reduced decode's
