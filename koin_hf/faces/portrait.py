"""One face per photo, cut as `koin prepare --faces` cut the training crops.

A face model (trained on `normal-faces`) only ever saw aligned face crops, so photos given to it
one by one (`koin enroll`'s photos of a new person) must be cut the same way: the dataset's
detector, crop size, margin and detection size, read from its prepare_report.json, and, as for
a real portrait photo in prepare, the largest face found.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from koin_hf.data.images import UnusableImage, decode_rgb
from koin_hf.data.prepare import REPORT_FILE
from koin_hf.dataset_script.koin import DEFAULT_IMAGE_SIZE
from koin_hf.errors import KoinError
from koin_hf.faces.alignment import DEFAULT_MARGIN, align_face
from koin_hf.faces.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MAX_SIDE,
    Face,
    detect_reduced,
    get_detector,
)


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face a portrait is about when nothing else says which: the largest box."""
    return max(faces, key=lambda face: face.area) if faces else None


@dataclass(frozen=True)
class FaceCropSettings:
    """How a dataset's face crops were made (prepare_report.json's `faces` block)."""

    detector: str = DEFAULT_DETECTOR
    size: int = DEFAULT_IMAGE_SIZE  # koin prepare's default --image_size
    margin: float = DEFAULT_MARGIN
    max_side: int = DEFAULT_MAX_SIDE

    @classmethod
    def of_dataset(cls, dataset: str | Path | None) -> FaceCropSettings:
        """The settings a local prepared dataset recorded; the defaults for anything else.

        A dataset whose crops came from koin synth's recorded boxes (`recorded`, ground truth
        that new photos do not have) falls back to the default detector.
        """
        path = Path(str(dataset)) / REPORT_FILE if dataset else None
        if path is None or not path.is_file():
            return cls()
        try:
            faces = json.loads(path.read_text(encoding="utf-8")).get("faces") or {}
        except (OSError, ValueError):
            return cls()
        detector = faces.get("detector") or DEFAULT_DETECTOR
        return cls(
            detector=DEFAULT_DETECTOR if detector == "recorded" else str(detector),
            size=int(faces.get("crop_size") or DEFAULT_IMAGE_SIZE),
            margin=float(faces.get("margin", DEFAULT_MARGIN)),
            max_side=int(faces.get("max_side") or DEFAULT_MAX_SIDE),
        )


def portrait_crops(
    paths: Sequence[str],
    settings: FaceCropSettings,
    max_megapixels: float | None = None,
) -> tuple[list[Image.Image], list[str]]:
    """(the largest face of each photo as an aligned crop, the photos in which none was found).

    A file that cannot be decoded is a KoinError naming it: the caller chose these photos.
    """
    finder = get_detector(settings.detector)
    crops, without_face = [], []
    for path in paths:
        try:
            photo = decode_rgb(path, max_megapixels=max_megapixels)
        except UnusableImage as err:
            raise KoinError(f"cannot read image {path!r}: {err}") from err
        face = largest_face(detect_reduced(finder, photo, settings.max_side))
        if face is None:
            without_face.append(path)
            continue
        crops.append(align_face(photo, face, settings.size, settings.margin))
    return crops, without_face
