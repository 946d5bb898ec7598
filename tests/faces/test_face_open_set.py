"""A face model (trained on `normal-faces`) in the open-set tools: calibrate, enroll and
evaluate --open_set work on face crops, carved as its run carved them, never on whole photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from koin_hf.cli import main
from koin_hf.data.loading import load_prepared
from koin_hf.evaluation.embeddings import Embedder, carve_validation
from koin_hf.evaluation.open_set import Prototypes
from koin_hf.evaluation.open_set_eval import OpenSetConfigs, evaluate_open_set
from koin_hf.faces.portrait import FaceCropSettings, portrait_crops
from koin_hf.models.loading import load_model_and_processor
from koin_hf.run_record import RunRecord
from koin_hf.synthetic.writer import generate_synthetic_koin

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def face_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("face-open-set")
    raw = generate_synthetic_koin(
        root / "raw", num_classes=3, seed=4, train_per_class=8, test_per_class=2,
        hard_per_class=2, group_per_class=0, unknown_classes=2, unknown_per_class=3,
        progress=False,
    )  # fmt: skip
    prepared = root / "prepared"
    assert main(["prepare", str(raw), str(prepared), "--faces", "--image_size", "128"]) == 0
    names = json.loads((prepared / "prepare_report.json").read_text())["class_names"]
    return {"root": root, "raw": raw, "prepared": prepared, "names": names}


def _face_model(face_data: dict, folder: Path) -> Path:
    """A tiny ViT that says it was trained on normal-faces of the prepared set."""
    model, processor, _ = load_model_and_processor("vit-tiny", face_data["names"], seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    RunRecord(
        family="vit", base_model="vit-tiny", method="full", seed=42,
        dataset=str(face_data["prepared"]), dataset_config="normal-faces",
        data_args={"dataset_name": str(face_data["prepared"]),
                   "dataset_config_name": "normal-faces", "train_val_split": 0.15},
    ).save(folder)  # fmt: skip
    return folder


def test_prepare_faces_gives_unknown_people_their_own_config_with_no_label(face_data):
    unknown = load_prepared(face_data["prepared"], "unknown-faces")["test"]
    assert len(unknown) >= 5 and set(unknown["label"]) == {-1}
    assert all(i.startswith("unknown_cases/test/") for i in unknown["image_id"])


def test_the_open_set_configs_follow_what_the_model_was_trained_on(face_data, tmp_path):
    faces = OpenSetConfigs.for_model(_face_model(face_data, tmp_path / "faces"))
    assert faces == OpenSetConfigs("normal-faces", ("normal-faces", "hard-faces"), "unknown-faces")
    whole = OpenSetConfigs.for_model(tmp_path / "not-a-koin-model")
    assert whole == OpenSetConfigs("normal", ("normal", "hard", "group"), "unknown")


def test_calibrate_and_evaluate_a_face_model_on_face_crops(face_data, tmp_path, capsys):
    model = _face_model(face_data, tmp_path / "faces")
    assert main(["calibrate", str(model)]) == 0
    capsys.readouterr()
    fitted = json.loads((model / "config.json").read_text())["koin_open_set"]["fitted_on"]
    assert fitted["config"] == "normal-faces"
    # The validation rows are the ones train.py held out of normal-faces/train, not photos.
    rows = load_prepared(face_data["prepared"], "normal-faces")["train"]
    embedded = Embedder(model).embed_split(rows, "normal-faces/train")
    _, held = carve_validation(embedded, 0.15, 42)
    assert fitted["validation_images"] == len(held)

    results = evaluate_open_set(model, face_data["prepared"], tmp_path / "eval")
    assert results["inputs"] == "face crops"
    assert list(results["configs"]) == ["normal-faces", "hard-faces"]
    unknown_rows = load_prepared(face_data["prepared"], "unknown-faces")["test"]
    assert results["unknown_images"] == len(unknown_rows)


def test_enroll_cuts_each_photo_to_its_face_and_reports_photos_without_one(
    face_data, tmp_path, capsys
):
    model = _face_model(face_data, tmp_path / "faces")
    assert main(["calibrate", str(model)]) == 0
    # One photo under three names: a random model's embeddings need not bring a person's
    # different photos together, and that is not what this test is about.
    photo = sorted((face_data["raw"] / "unknown_cases" / "test").glob("*/*.jpg"))[0]
    photos = [tmp_path / f"{name}.jpg" for name in "abc"]
    for copy in photos:
        copy.write_bytes(photo.read_bytes())
    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (240, 300), (70, 110, 160)).save(wall)
    capsys.readouterr()
    args = ["enroll", str(model), "--name", "New Person", *map(str, photos), str(wall)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 photo(s) without a face were not used" in out and "wall.jpg" in out
    enrolled = json.loads((model / "config.json").read_text())["koin_enrolled"]["New Person"]
    assert enrolled["photos_without_a_face"] == ["wall.jpg"]
    assert enrolled["config_for_scale"] == "normal-faces"
    # The new prototype is the face crops' mean embedding, cut as prepare cut the training set.
    crops, skipped = portrait_crops(
        [str(p) for p in photos], FaceCropSettings.of_dataset(face_data["prepared"])
    )
    assert skipped == [] and crops[0].size == (128, 128)
    prototypes = Prototypes.load(model)
    expected = Embedder(model).embed_images(crops).mean(axis=0) - prototypes.mean
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(prototypes.rows[-1], expected, atol=1e-4)
