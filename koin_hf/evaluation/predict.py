"""`koin predict`: the top-k names for a few image files, through `pipeline()`.

Files are decoded by koin-hf's decoder (koin_hf.data.images), not by transformers' `load_image`
(which turns a 16-bit PNG white and puts transparency on black), so a file gets the pixels that
`koin prepare`, training and `koin evaluate` give it; the decoded PIL images go to
`pipeline("image-classification")`. Every file's header is checked first (it exists, it is an
image, it is within the pixel budget), before torch or the model is loaded: a bad file costs a
moment, not a model load, and a decompression bomb costs no memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from koin_hf.data.images import UnusableImage, check_image, pixel_budget
from koin_hf.errors import KoinError
from koin_hf.models.model_folder import check_model_folder

if TYPE_CHECKING:
    import torch

# A photo is a few megabytes; a download larger than this is not one.
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024


def _download(url: str) -> bytes:
    """The bytes at `url`, streamed and capped at MAX_DOWNLOAD_BYTES (standard library only)."""
    import urllib.error
    import urllib.request

    if not url.lower().startswith(("http://", "https://")):
        raise KoinError(f"image {url!r}: only http:// and https:// addresses are read.")
    chunks, size = [], 0
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - scheme checked
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise KoinError(
                        f"image {url!r} is larger than {MAX_DOWNLOAD_BYTES // 2**20} MB; "
                        "download it and check it first."
                    )
                chunks.append(chunk)
    except (urllib.error.URLError, OSError, ValueError) as err:
        if isinstance(err, KoinError):
            raise
        raise KoinError(f"cannot download image {url!r}: {err}") from err
    return b"".join(chunks)


def checked_source(name: str, max_megapixels: float | None = None) -> str | bytes:
    """A path (or downloaded bytes) whose header has been read and is within the budget."""
    max_megapixels = pixel_budget(max_megapixels)
    if "://" in name:
        source: str | bytes = _download(name)
    elif not Path(name).exists() and not Path(name).is_symlink():
        raise KoinError(f"image {name!r} does not exist.")
    else:
        source = name
    try:
        check_image(source, max_megapixels=max_megapixels)
    except UnusableImage as err:
        raise KoinError(f"cannot read image {name!r}: {err}") from err
    return source


class Predictor:
    """A classifier loaded once (through `pipeline()`), turning image files into top-k names.

    The code path `koin predict` runs, kept loaded for callers that classify many images one
    after another (`koin demo`): each source is checked (header, pixel budget), decoded by
    `koin_hf.data.transforms.decode_for_model` (the pixels `koin evaluate` gives it) and ranked by
    `pipeline("image-classification")`.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | torch.device | None = None,
        max_megapixels: float | None = None,
        open_set: bool = True,
    ) -> None:
        self.budget = pixel_budget(max_megapixels)
        from transformers import pipeline

        from koin_hf.data.transforms import model_decode_side
        from koin_hf.evaluation.scoring import default_device

        check_model_folder(model)  # a truncated or missing weights file: one line, before any work
        from koin_hf.models.loading import quiet_model_io

        try:
            with quiet_model_io():
                self.classifier = pipeline(
                    "image-classification", model=str(model), device=device or default_device()
                )
        except (OSError, ValueError) as err:
            raise KoinError(f"cannot load the model {str(model)!r}: {err}") from err
        self.decode_side = model_decode_side(self.classifier.image_processor)
        from koin_hf.evaluation.open_set import OpenSetRule

        # The model's "unknown" rule (`koin calibrate`), or None: answer with names only.
        self.rule = OpenSetRule.for_model(model, self.classifier.model.config) if open_set else None

    def check(self, name: str) -> str | bytes:
        """The file (or downloaded bytes) behind `name`, its header read and within the budget."""
        return checked_source(name, self.budget)

    def __call__(
        self,
        sources: Sequence[str | bytes],
        *,
        top_k: int = 3,
        names: Sequence[str] | None = None,
    ) -> list[list[dict]]:
        """For each checked source, the top-k `{"label", "score"}` dicts, best first."""
        from koin_hf.data.transforms import decode_for_model

        if top_k < 1:
            raise KoinError(f"--top_k must be at least 1, got {top_k}.")
        names = list(names) if names is not None else [str(source) for source in sources]
        decoded = []
        for name, source in zip(names, sources, strict=True):
            try:
                decoded.append(decode_for_model(source, self.decode_side, self.budget))
            except UnusableImage as err:
                raise KoinError(f"cannot read image {name!r}: {err}") from err
        if not decoded:
            return []
        if self.rule is None:
            return self.classifier(decoded, top_k=top_k)
        if not self.rule.needs_embeddings:
            return self.rule.apply(self.classifier(decoded, top_k=top_k))
        import torch

        from koin_hf.evaluation.embeddings import captured_head_inputs

        # The embeddings come from the same forward pass that pipeline() runs, read off the head.
        with captured_head_inputs(self.classifier.model) as captured:
            ranked = self.classifier(decoded, top_k=top_k)
        return self.rule.apply(ranked, torch.cat(captured).reshape(len(decoded), -1).numpy())


def predict(
    model: str | Path,
    images: Sequence[str | Path],
    *,
    top_k: int = 3,
    device: str | torch.device | None = None,
    max_megapixels: float | None = None,
    open_set: bool = True,
) -> list[list[dict]]:
    """For each image, `pipeline("image-classification")`'s top-k `{"label", "score"}` dicts.

    `model` is a koin-hf output dir, a Hub id or any image classifier; `images` are file paths
    (or URLs). Every image's header is read before the model loads, so a typo or an image over
    the pixel budget (`max_megapixels`, default $KOIN_MAX_MEGAPIXELS, else 64) does not cost a
    model load. Each image is decoded by `koin_hf.data.transforms.decode_for_model`: the same
    pixels `koin evaluate` gives it. A model calibrated by `koin calibrate` (config.json
    `koin_open_set`) answers "unknown" when the top score is at or below its threshold:
    `{"label": "unknown", "score": top score, "threshold": t}` comes first and the top-k names
    follow it (`open_set=False`: never).
    """
    if top_k < 1:
        raise KoinError(f"--top_k must be at least 1, got {top_k}.")
    budget = pixel_budget(max_megapixels)
    names = [str(image) for image in images]
    sources = [checked_source(name, budget) for name in names]
    # Only now the heavy imports (in Predictor): everything above runs without torch.
    predictor = Predictor(model, device=device, max_megapixels=budget, open_set=open_set)
    return predictor(sources, top_k=top_k, names=names)
