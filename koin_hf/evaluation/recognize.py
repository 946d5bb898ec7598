"""`koin recognize`: every face in a photo, with its box and the model's top names.

Each photo is decoded once at full resolution (koin-hf's decoder, pixel budget first), the
detector looks at a reduced copy (koin_hf.faces.detection.detect_reduced), every face is cropped
upright from the full-resolution pixels (koin_hf.faces.alignment) and the crops are classified by
`name_faces`, the one function that turns face crops into names, and that applies a calibrated
model's "unknown" rule (koin_hf.evaluation.open_set.OpenSetRule, the rule `koin predict` applies
to whole photos). `FaceRecognizer` keeps detector and model loaded (`koin demo --faces`).
Optionally an annotated PNG per photo: boxes and top names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from koin_hf.data.images import UnusableImage, decode_rgb, pixel_budget
from koin_hf.errors import KoinError
from koin_hf.faces.alignment import DEFAULT_MARGIN, align_face
from koin_hf.faces.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MAX_SIDE,
    Face,
    check_max_side,
    detect_reduced,
)
from koin_hf.faces.detection import get_detector as _get_detector

if TYPE_CHECKING:
    from PIL import Image

    from koin_hf.evaluation.open_set import OpenSetRule
    from koin_hf.evaluation.scoring import ImageScorer

# Crops are made at the size koin prepare stores face crops (its default --image_size), or the
# model's input size when that is larger: the model sees what it was trained on.
DEFAULT_CROP_SIZE = 256


def face_probabilities(
    scorer: ImageScorer, crops: Sequence[Image.Image], *, with_embeddings: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """(len(crops), n_labels) softmax probabilities of the model over its labels, and (with
    `with_embeddings`) the (len(crops), dim) head inputs of the same forward pass."""
    if not crops:
        return np.zeros((0, len(scorer.labels)), np.float32), None
    if not with_embeddings:
        logits = scorer.logits(list(crops))
        embeddings = None
    else:
        from koin_hf.evaluation.embeddings import captured_head_inputs

        with captured_head_inputs(scorer.model) as captured:
            logits = scorer.logits(list(crops))
        embeddings = captured[-1].reshape(len(crops), -1).numpy()
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True), embeddings


def name_faces(
    scorer: ImageScorer,
    crops: Sequence[Image.Image],
    top_k: int = 3,
    rule: OpenSetRule | None = None,
) -> list[list[dict]]:
    """For each face crop, the top-k `{"label", "score"}` (highest first): the one place crops
    become names. With a calibrated model's `rule` (koin calibrate), a face whose open-set
    score is at or below the threshold gets `{"label": "unknown", "score", "threshold"}` first,
    its closest names after it, as `koin predict` answers for a whole photo."""
    needs_embeddings = rule is not None and rule.needs_embeddings
    probabilities, embeddings = face_probabilities(scorer, crops, with_embeddings=needs_embeddings)
    ranked = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:top_k]
        ranked.append([{"label": scorer.labels[i], "score": float(row[i])} for i in order])
    if rule is None or not ranked:
        return ranked
    # embeddings is None for the msp rule, which reads the top softmax score of `ranked`.
    return rule.apply(ranked, embeddings)


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


class FaceRecognizer:
    """A detector and a model loaded once: photo files in, every face with its names out.

    The code path of `koin recognize`, kept loaded for callers that look at many photos one
    after another (`koin demo --faces`). With a model calibrated by `koin calibrate`, a face below
    the threshold is answered "unknown" (`open_set=False`: never).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        detector: str = DEFAULT_DETECTOR,
        max_side: int = DEFAULT_MAX_SIDE,
        margin: float = DEFAULT_MARGIN,
        device=None,
        max_megapixels: float | None = None,
        open_set: bool = True,
    ) -> None:
        check_max_side(max_side)
        self.budget = pixel_budget(max_megapixels)
        self.max_side = max_side
        self.margin = margin
        self.finder = _get_detector(detector)  # an unknown name or missing extra: before the model

        from koin_hf.evaluation.open_set import OpenSetRule
        from koin_hf.evaluation.scoring import ImageScorer

        self.scorer = ImageScorer(model, device=device)
        self.crop_size = crop_size_for(self.scorer)
        self.rule = OpenSetRule.for_model(model, self.scorer.model.config) if open_set else None

    def check(self, name: str) -> str | bytes:
        """The file (or downloaded bytes) behind `name`, its header read and within the budget."""
        from koin_hf.evaluation.predict import checked_source

        return checked_source(name, self.budget)

    def __call__(self, name: str, source: str | bytes | None = None, top_k: int = 3) -> dict:
        """`{"image", "width", "height", "detector", "faces": [{"box", "score", "landmarks",
        "predictions"}]}` for one photo; `source` is what `check(name)` returned (read now if
        not given). Faces are listed left to right."""
        return self.recognize_photo(name, source, top_k)[0]

    def recognize_photo(
        self, name: str, source: str | bytes | None = None, top_k: int = 3
    ) -> tuple[dict, Image.Image]:
        """What `__call__` returns, and the decoded photo (to draw on)."""
        if top_k < 1:
            raise KoinError(f"--top_k must be at least 1, got {top_k}.")
        source = self.check(name) if source is None else source
        try:
            photo = decode_rgb(source, max_megapixels=self.budget)
        except UnusableImage as err:
            raise KoinError(f"cannot read image {name!r}: {err}") from err
        faces: list[Face] = sorted(
            detect_reduced(self.finder, photo, self.max_side), key=lambda face: face.box[0]
        )
        crops = [align_face(photo, face, self.crop_size, self.margin) for face in faces]
        ranked = name_faces(self.scorer, crops, min(top_k, len(self.scorer.labels)), rule=self.rule)
        entry = {
            "image": name,
            "width": photo.width,
            "height": photo.height,
            "detector": self.finder.name,
            "faces": [
                {**face.to_dict(), "predictions": predictions}
                for face, predictions in zip(faces, ranked, strict=True)
            ],
        }
        return entry, photo


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
    open_set: bool = True,
) -> list[dict]:
    """Every face of every photo: `{"image", "width", "height", "faces": [{"box", "score",
    "landmarks", "predictions": [{"label", "score"}, ...]}], "annotated"}`.

    `detector` names a detector of koin_hf.faces.detection.DETECTORS. With `output_dir`, an
    annotated PNG per photo is written there (`annotated` is its path, else None). Faces are
    listed left to right. A model calibrated by `koin calibrate` answers "unknown" for a face
    at or below its threshold: `{"label": "unknown", "score", "threshold"}` comes first in that
    face's predictions, the closest names after it (`open_set=False`: never).
    """
    from koin_hf.evaluation.predict import checked_source

    if top_k < 1:
        raise KoinError(f"--top_k must be at least 1, got {top_k}.")
    check_max_side(max_side)
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise KoinError(f"--output_dir {out_dir} is a file, not a folder.")
    budget = pixel_budget(max_megapixels)
    names = [str(image) for image in images]
    # Every header is read before the detector and the model load: a typo costs nothing.
    sources = [checked_source(name, budget) for name in names]
    recognizer = FaceRecognizer(
        model,
        detector=detector,
        max_side=max_side,
        margin=margin,
        device=device,
        max_megapixels=budget,
        open_set=open_set,
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, source, png in zip(names, sources, _output_names(names), strict=True):
        entry, photo = recognizer.recognize_photo(name, source, top_k)
        entry["annotated"] = None
        if out_dir is not None:
            path = out_dir / png
            annotate(photo, entry["faces"]).save(path, "PNG")
            entry["annotated"] = str(path)
        results.append(entry)
    return results
