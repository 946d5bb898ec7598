"""Face detection: real faces shipped by scikit-image, the drawn faces of synthetic KoIn (whose
records say exactly where every face is), and the detector table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from koin_hf.errors import KoinError
from koin_hf.faces.detection import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Face,
    FaceDetector,
    RecordedDetector,
    detect_reduced,
    faces_from_record,
    get_detector,
    iou,
)
from koin_hf.synthetic.writer import FACES_RECORD_FILE, generate_synthetic_koin, iter_photos

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("ai_edge_litert")

# Hand-labelled from the picture: brows to chin, cheek to cheek.
ASTRONAUT_FACE = (178.0, 70.0, 276.0, 180.0)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return get_detector(DEFAULT_DETECTOR)


def _lfw(images: np.ndarray) -> list[Image.Image]:
    """lfw_subset's 25x25 grey crops, upscaled to 160 px like a small face in a photo."""
    return [
        Image.fromarray((image * 255).astype(np.uint8)).convert("RGB").resize((160, 160))
        for image in images
    ]


def test_the_astronaut_has_one_face_with_eyes_where_they_are(detector):
    image = Image.fromarray(skimage_data.astronaut())
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    assert iou(face.box, ASTRONAUT_FACE) >= 0.5
    (lx, ly), (rx, ry) = face.landmarks["left_eye"], face.landmarks["right_eye"]
    assert 190 < lx < 220 < 230 < rx < 260, "left_eye is the one on the picture's left"
    assert 90 < ly < 120 and 90 < ry < 120
    assert 0.5 <= face.score <= 1.0


def test_lfw_subset_faces_found_and_non_faces_left_alone(detector):
    """skimage's lfw_subset: 100 face crops then 100 non-face patches."""
    images = skimage_data.lfw_subset()
    found = sum(bool(detector.detect(image)) for image in _lfw(images[:100]))
    false_boxes = sum(len(detector.detect(image)) for image in _lfw(images[100:]))
    assert found >= 90, f"found faces in {found}/100 lfw crops"
    assert false_boxes <= 5, f"{false_boxes} boxes on 100 non-face patches"


def test_reduced_detection_maps_boxes_back_to_full_resolution(detector):
    image = Image.fromarray(skimage_data.astronaut()).resize((1536, 1536))
    faces = detect_reduced(detector, image, max_side=512)
    assert len(faces) == 1
    assert iou(faces[0].box, tuple(v * 3 for v in ASTRONAUT_FACE)) >= 0.5
    assert faces[0].landmarks["left_eye"][0] > 500  # in full-resolution pixels


def test_synthetic_faces_are_found_where_the_generator_drew_them(detector):
    """The drawn faces are found: the labelled one of each portrait and most group faces."""
    photos = list(iter_photos(4, 3, {"test": 2, "group": 1}))
    portraits = [p for p in photos if p.subset == "test"]
    hits = sum(
        any(iou(f.box, p.face_box) >= 0.3 for f in detect_reduced(detector, p.image))
        for p in portraits
    )
    assert hits >= len(portraits) - 1
    group_faces = [(p, face) for p in photos if p.subset == "group" for face in p.faces]
    found = sum(
        any(iou(f.box, face.box) >= 0.3 for f in detect_reduced(detector, p.image))
        for p, face in group_faces
    )
    assert found >= 0.8 * len(group_faces), f"{found}/{len(group_faces)} group faces"


def test_recorded_faces_are_the_generators_truth_at_any_size(tmp_path):
    raw = generate_synthetic_koin(
        tmp_path / "raw",
        num_classes=2,
        train_per_class=1,
        test_per_class=0,
        hard_per_class=0,
        group_per_class=1,
        progress=False,
    )
    lines = (raw / FACES_RECORD_FILE).read_text().splitlines()
    records = {json.loads(line)["image_id"]: json.loads(line) for line in lines}
    assert len(records) == 4
    group = records["Group_cases/test/0001/img_000.jpg"]
    assert 3 <= len(group["faces"]) <= 6
    assert 0 <= group["labelled"] < len(group["faces"])
    recorded = RecordedDetector(raw / FACES_RECORD_FILE)
    image = Image.open(raw / group["image_id"])
    assert group["size"] == list(image.size)
    faces = recorded.detect(image, image_id=group["image_id"])
    assert [list(f.box) for f in faces] == [list(map(float, g["box"])) for g in group["faces"]]
    half = image.resize((image.width // 2, image.height // 2))
    small = recorded.detect(half, image_id=group["image_id"])
    assert small[0].box[2] == pytest.approx(faces[0].box[2] * half.width / image.width)
    assert recorded.detect(image, image_id="not/recorded.jpg") == []
    assert faces_from_record(group)[group["labelled"]].landmarks["left_eye"] == tuple(
        group["faces"][group["labelled"]]["left_eye"]
    )


def test_the_detector_table(detector):
    assert DEFAULT_DETECTOR in DETECTORS and "recorded" in DETECTORS
    assert isinstance(detector, FaceDetector)
    assert get_detector(DEFAULT_DETECTOR) is detector  # loaded once
    with pytest.raises(KoinError, match="unknown face detector 'mtcnn'.*blazeface"):
        get_detector("mtcnn")
    assert Face((0, 0, 4, 2), 0.9).scaled(2).box == (0, 0, 8, 4)


def test_haar_alternative_finds_the_astronaut():
    pytest.importorskip("cv2")
    faces = get_detector("opencv-haar").detect(Image.fromarray(skimage_data.astronaut()))
    assert len(faces) == 1 and iou(faces[0].box, ASTRONAUT_FACE) >= 0.5
