"""`koin recognize`: every face with its box, top-3 names from the model, and a drawn PNG."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from koin_hf.cli import main
from koin_hf.errors import KoinError
from koin_hf.evaluation.embeddings import Embedder
from koin_hf.evaluation.open_set import CONFIG_KEY, OpenSetSettings, Prototypes
from koin_hf.evaluation.recognize import crop_size_for, name_faces, recognize
from koin_hf.evaluation.scoring import ImageScorer
from koin_hf.faces.alignment import align_face
from koin_hf.faces.detection import detect_reduced, get_detector, iou
from koin_hf.models.loading import load_model_and_processor
from koin_hf.synthetic.writer import iter_photos

pytest.importorskip("ai_edge_litert")
NAMES = ["Ann Lee", "Bo Kim", "Cy Park", "Di Choi"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vit")
    model, processor, _ = load_model_and_processor("vit-tiny", NAMES, seed=0)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory):
    photo = next(iter(iter_photos(3, 7, {"group": 1}, image_size=(800, 560))))
    path = tmp_path_factory.mktemp("photos") / "group.jpg"
    photo.image.save(path, quality=95)
    return photo, path


def test_every_face_gets_a_box_and_the_models_top3(model_dir, group_photo, tmp_path):
    photo, path = group_photo
    (result,) = recognize(model_dir, [path], output_dir=tmp_path / "out")
    faces = result["faces"]
    assert (result["width"], result["height"]) == (800, 560)
    assert len(faces) >= len(photo.faces) - 1
    for drawn in photo.faces[:-1]:
        assert any(iou(tuple(f["box"]), drawn.box) >= 0.3 for f in faces)
    assert [f["box"][0] for f in faces] == sorted(f["box"][0] for f in faces)
    for face in faces:
        labels = [p["label"] for p in face["predictions"]]
        scores = [p["score"] for p in face["predictions"]]
        assert len(labels) == 3 and set(labels) <= set(NAMES)
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        assert set(face["landmarks"]) >= {"left_eye", "right_eye"}
    annotated = Image.open(result["annotated"])
    assert annotated.size == (800, 560) and annotated.format == "PNG"
    assert not np.array_equal(np.asarray(annotated), np.asarray(Image.open(path).convert("RGB")))


def test_names_come_from_the_model_through_one_function(model_dir, group_photo):
    """The scores are the model's softmax on the aligned crops, not anything else."""
    photo, path = group_photo
    scorer = ImageScorer(model_dir, device="cpu")
    image = Image.open(path).convert("RGB")
    faces = sorted(detect_reduced(get_detector(), image), key=lambda f: f.box[0])
    crops = [align_face(image, face, crop_size_for(scorer)) for face in faces]
    logits = scorer.logits(crops)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    ranked = name_faces(scorer, crops, top_k=4)
    for row, names in zip(expected, ranked, strict=True):
        assert [p["label"] for p in names][0] == NAMES[int(row.argmax())]
        assert names[0]["score"] == pytest.approx(float(row.max()), rel=1e-5)
    (result,) = recognize(model_dir, [path], top_k=4)
    got = [[(p["label"], p["score"]) for p in f["predictions"]] for f in result["faces"]]
    want = [[(p["label"], p["score"]) for p in names] for names in ranked]
    assert [[label for label, _ in row] for row in got] == [[n for n, _ in r] for r in want]
    assert np.allclose([[s for _, s in row] for row in got], [[s for _, s in r] for r in want])


def test_cli_json_and_a_photo_without_faces(model_dir, group_photo, tmp_path, capsys):
    photo, path = group_photo
    empty = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (90, 140, 200)).save(empty)
    assert main(["recognize", str(model_dir), str(path), str(empty), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(path), str(empty)]
    assert results[1]["faces"] == [] and len(results[0]["faces"]) >= 2
    assert main(["recognize", str(model_dir), str(path), "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "face(s)" in out and (tmp_path / "group.faces.png").is_file()


def test_mistakes_are_one_line(model_dir, group_photo, tmp_path, capsys):
    _, path = group_photo
    assert main(["recognize", str(model_dir), str(tmp_path / "missing.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(KoinError, match="unknown face detector"):
        recognize(model_dir, [path], detector="nope")


def _calibrated_copy(model_dir: Path, root: Path, settings: OpenSetSettings, prototypes=None):
    """The model folder with an "unknown" rule written as koin calibrate writes it."""
    folder = root / "calibrated"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config[CONFIG_KEY] = settings.to_dict()
    (folder / "config.json").write_text(json.dumps(config))
    if prototypes is not None:
        prototypes.save(folder)
    return folder


def test_a_calibrated_model_answers_unknown_per_face(model_dir, group_photo, tmp_path, capsys):
    """Faces at or below the prototype threshold are "unknown", the others keep their names."""
    _, path = group_photo
    scorer = ImageScorer(model_dir, device="cpu")
    image = Image.open(path).convert("RGB")
    faces = sorted(detect_reduced(get_detector(), image), key=lambda f: f.box[0])
    crops = [align_face(image, face, crop_size_for(scorer)) for face in faces]
    embeddings = Embedder(scorer).embed_images(crops)
    rng = np.random.default_rng(0)
    prototypes = Prototypes.from_embeddings(
        np.concatenate([embeddings, rng.normal(size=(8, embeddings.shape[1]))]),
        np.array([0] * len(crops) + [1, 1, 2, 2, 3, 3, 1, 2]),
        len(NAMES),
    )
    scores = prototypes.scores(embeddings)
    assert len(set(np.round(scores, 6))) > 1
    threshold = float(np.sort(scores)[len(scores) // 2 - 1])  # some faces below, some above
    folder = _calibrated_copy(model_dir, tmp_path, OpenSetSettings(threshold), prototypes)

    (result,) = recognize(folder, [path])
    for face, score in zip(result["faces"], scores, strict=True):
        first = face["predictions"][0]
        if score <= threshold:
            assert first == {"label": "unknown", "score": pytest.approx(score, abs=1e-4),
                             "threshold": threshold}  # fmt: skip
            assert len(face["predictions"]) == 4  # the closest names still follow
        else:
            assert first["label"] in NAMES and len(face["predictions"]) == 3
    assert {f["predictions"][0]["label"] for f in result["faces"]} >= {"unknown"}
    (closed,) = recognize(folder, [path], open_set=False)
    assert all(f["predictions"][0]["label"] in NAMES for f in closed["faces"])

    assert main(["recognize", str(folder), str(path)]) == 0
    assert "unknown (score" in capsys.readouterr().out
    assert main(["recognize", str(folder), str(path), "--closed_set"]) == 0
    assert "unknown" not in capsys.readouterr().out


def test_the_msp_rule_and_a_missing_prototypes_file(model_dir, group_photo, tmp_path):
    _, path = group_photo
    always = _calibrated_copy(model_dir, tmp_path / "a", OpenSetSettings(1.0, score="msp"))
    (result,) = recognize(always, [path])
    assert result["faces"] and all(
        f["predictions"][0]["label"] == "unknown" for f in result["faces"]
    )
    missing = _calibrated_copy(model_dir, tmp_path / "b", OpenSetSettings(0.5))
    with pytest.raises(KoinError, match="has no open_set.safetensors"):
        recognize(missing, [path])


@pytest.mark.parametrize("max_side", ["0", "-5", "63"])
def test_a_detector_copy_too_small_to_find_faces_is_refused(
    model_dir, group_photo, max_side, capsys
):
    _, path = group_photo
    assert main(["recognize", str(model_dir), str(path), "--max_side", max_side]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"koin recognize: error: --max_side must be at least 64 pixels (the detector's copy of "
        f"the photo), got {max_side}."
    ]


def test_an_output_dir_that_is_a_file_is_refused(model_dir, group_photo, tmp_path, capsys):
    _, path = group_photo
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    assert main(["recognize", str(model_dir), str(path), "--output_dir", str(taken)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"koin recognize: error: --output_dir {taken} is a file, not a folder."
    )


def test_recognize_prints_faces_not_the_runtimes_notices(model_dir, group_photo):
    """LiteRT's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when
    the detector is set up; koin recognize's output is its faces alone (a fresh process: the
    notice comes once per process)."""
    import subprocess
    import sys

    _, path = group_photo
    result = subprocess.run(
        [sys.executable, "-m", "koin_hf.cli", "recognize", str(model_dir), str(path)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{path}: ") and "face(s)" in result.stdout


def test_the_notice_filter_lets_every_other_message_through(capfd):
    from koin_hf.faces.detection import _without_xnnpack_notice

    def noisy():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nreal error\n")
        return 7

    capfd.readouterr()
    assert _without_xnnpack_notice(noisy) == 7
    assert capfd.readouterr().err == "real error\n"
