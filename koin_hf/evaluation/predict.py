"""`koin predict`: the top-k names for a few image files, through `pipeline()`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import UnidentifiedImageError
from transformers import pipeline
from transformers.image_utils import load_image

from koin_hf.errors import KoinError
from koin_hf.evaluation.scoring import default_device
from koin_hf.models.model_folder import check_model_folder


def predict(
    model: str | Path,
    images: Sequence[str | Path],
    *,
    top_k: int = 3,
    device: str | torch.device | None = None,
) -> list[list[dict]]:
    """For each image, `pipeline("image-classification")`'s top-k `{"label", "score"}` dicts.

    `model` is a koin-hf output dir, a Hub id or any image classifier; `images` are file paths
    (or URLs). Every image is read before the model loads, so a typo does not cost a model load.
    """
    if top_k < 1:
        raise KoinError(f"--top_k must be at least 1, got {top_k}.")
    check_model_folder(model)  # a truncated or missing weights file: one line, before any work
    loaded = []
    for path in map(str, images):
        if "://" not in path and not Path(path).is_file():
            raise KoinError(f"image {path!r} does not exist.")
        try:
            loaded.append(load_image(path))
        except (OSError, ValueError, UnidentifiedImageError) as err:
            raise KoinError(f"cannot read image {path!r}: {err}") from err
    try:
        classifier = pipeline(
            "image-classification", model=str(model), device=device or default_device()
        )
    except (OSError, ValueError) as err:
        raise KoinError(f"cannot load the model {str(model)!r}: {err}") from err
    return classifier(loaded, top_k=top_k)
