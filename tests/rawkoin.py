"""Small raw KoIn folders for tests, written the way the authors distribute them.

Images are tiny solid-colour pictures with a class-dependent colour; what matters here is the
layout, the file kinds and the counts, not what a model could learn from them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_IDS = ("0000", "0001", "0002")
CLASS_NAMES = ("Kim Minji", "Lee Jieun", 'Park "Jimin", Jr.')


def write_image(path: Path, class_index: int, *, size=(48, 40), fmt="JPEG", mode="RGB") -> Path:
    rng = np.random.default_rng(hash((path.name, class_index)) % 2**32)
    array = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    array[..., class_index % 3] = 200
    image = Image.fromarray(array, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def make_raw_koin(
    root: Path,
    *,
    per_split: dict[str, int] | None = None,
    names: bool = True,
    wrapper: str | None = None,
) -> Path:
    """Write a clean raw KoIn tree; returns the folder that holds normal_cases."""
    per_split = per_split or {
        "normal_cases/train": 4,
        "normal_cases/test": 2,
        "hard_cases/test": 2,
        "Group_cases/test": 1,
    }
    base = root / wrapper if wrapper else root
    for split, count in per_split.items():
        for class_index, class_id in enumerate(CLASS_IDS):
            for i in range(count):
                write_image(base / split / class_id / f"img_{i}.jpg", class_index)
    if names:
        with open(base / "classes.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "name"])
            writer.writerows(zip(CLASS_IDS, CLASS_NAMES, strict=True))
    return base


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()
