"""`koin recognize`: every face in a photo, with its box and the model's top names.

Each photo is decoded once at full resolution (koin-hf's decoder, pixel budget first), the
detector looks at a reduced copy (koin_hf.faces.detection.detect_reduced), every face is cropped
upright from the full-resolution pixels (koin_hf.faces.alignment) and the crops are classified by
`name_faces`, the one function that turns face crops into names (so a threshold or an "unknown"
answer can be added in one place). Optionally an annotated PNG per photo: boxes and top names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from koin_hf.data.images import UnusableImage, decode_rgb, pixel_budget
from koin_hf.errors import KoinError
from koin_hf.faces.alignment import DEFAULT_MARGIN, align_face
from koin_hf.faces.detection import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, Face, detect_reduced
from koin_hf.faces.detection import get_detector as _get_detector

if TYPE_CHECKING:
    from PIL import Image

    from koin_hf.evaluation.scoring import ImageScorer

# Crops are made at the size koin prepare stores face crops (its default --image_size), or the
# model's input size when that is larger: the model sees what it was trained on.
DEFAULT_CROP_SIZE = 256


def face_probabilities(scorer: ImageScorer, crops: Sequence[Image.Image]) -> np.ndarray:
    """(len(crops), n_labels) softmax probabilities of the model over its labels."""
    if not crops:
        return np.zeros((0, len(scorer.labels)), np.float32)
    logits = scorer.logits(list(crops))
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def name_faces(
    scorer: ImageScorer, crops: Sequence[Image.Image], top_k: int = 3
) -> list[list[dict]]:
    """For each face crop, the top-k `{"label", "score"}` (highest first): the one place crops
    become names."""
    probabilities = face_probabilities(scorer, crops)
    ranked = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:top_k]
        ranked.append([{"label": scorer.labels[i], "score": float(row[i])} for i in order])
    return ranked


def crop_size_for(scorer: ImageScorer) -> int:
    from koin_hf.data.transforms import model_decode_side

    return max(DEFAULT_CROP_SIZE, model_decode_side(scorer.image_processor) or 0)


def _font(size: int, text: str):
    from PIL import ImageFont

    if not text.isascii():
        from koin_hf.evaluation.plots import _font_covering

        path = _font_covering(frozenset(text))
        if path:
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def annotate(image: Image.Image, faces: Sequence[dict]) -> Image.Image:
    """A copy of the photo with every face's box and its top name and score."""
    from PIL import ImageDraw

    out = image.copy()
    draw = ImageDraw.Draw(out)
    line = max(2, round(max(image.size) / 400))
    text_size = max(12, round(max(image.size) / 50))
    for face in faces:
        x0, y0, x1, y1 = face["box"]
        draw.rectangle((x0, y0, x1, y1), outline=(255, 220, 0), width=line)
        if face.get("predictions"):
            best = face["predictions"][0]
            text = f"{best['label']} {best['score']:.2f}"
            font = _font(text_size, text)
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            width, height = right - left + 2 * line, bottom - top + 2 * line
            tx = max(0, min(x0, image.width - width))  # the label stays inside the picture
            ty = y0 - height if y0 - height >= 0 else min(y1, image.height - height)
            draw.rectangle((tx, ty, tx + width, ty + height), fill=(0, 0, 0))
            draw.text((tx + line - left, ty + line - top), text, fill=(255, 220, 0), font=font)
    return out


def _output_names(images: Sequence[str]) -> list[str]:
    """One PNG name per photo: its stem, numbered when two photos share one."""
    names, seen = [], set()
    for index, image in enumerate(images):
        stem = Path(image.split("?")[0]).stem or "image"
        name = f"{stem}.faces.png"
        if name in seen:
            name = f"{stem}-{index}.faces.png"
        seen.add(name)
        names.append(name)
    return names


def recognize(
    model: str | Path,
    images: Sequence[str | Path],
    *,
    detector: str = DEFAULT_DETECTOR,
    top_k: int = 3,
    output_dir: str | Path | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    margin: float = DEFAULT_MARGIN,
    device=None,
    max_megapixels: float | None = None,
) -> list[dict]:
    """Every face of every photo: `{"image", "width", "height", "faces": [{"box", "score",
    "landmarks", "predictions": [{"label", "score"}, ...]}], "annotated"}`.

    `detector` names a detector of koin_hf.faces.detection.DETECTORS. With `output_dir`, an
    annotated PNG per photo is written there (`annotated` is its path, else None). Faces are
    listed left to right.
    """
    from koin_hf.evaluation.predict import checked_source

    if top_k < 1:
        raise KoinError(f"--top_k must be at least 1, got {top_k}.")
    budget = pixel_budget(max_megapixels)
    names = [str(image) for image in images]
    sources = [checked_source(name, budget) for name in names]
    finder = _get_detector(detector)  # an unknown name or a missing extra fails before the model

    from koin_hf.evaluation.scoring import ImageScorer

    scorer = ImageScorer(model, device=device)
    crop_size = crop_size_for(scorer)
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, source, png in zip(names, sources, _output_names(names), strict=True):
        try:
            photo = decode_rgb(source, max_megapixels=budget)
        except UnusableImage as err:
            raise KoinError(f"cannot read image {name!r}: {err}") from err
        faces: list[Face] = sorted(
            detect_reduced(finder, photo, max_side), key=lambda face: face.box[0]
        )
        crops = [align_face(photo, face, crop_size, margin) for face in faces]
        ranked = name_faces(scorer, crops, min(top_k, len(scorer.labels)))
        entry = {
            "image": name,
            "width": photo.width,
            "height": photo.height,
            "detector": finder.name,
            "faces": [
                {**face.to_dict(), "predictions": predictions}
                for face, predictions in zip(faces, ranked, strict=True)
            ],
            "annotated": None,
        }
        if out_dir is not None:
            path = out_dir / png
            annotate(photo, entry["faces"]).save(path, "PNG")
            entry["annotated"] = str(path)
        results.append(entry)
    return results
