"""`koin predict MODEL IMAGE [IMAGE ...]`: the top-k names for each image, through pipeline()."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a koin-hf output dir, a Hub id, or any image classifier")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (or URLs)")
    parser.add_argument(
        "--top_k", "--top-k", type=int, default=3, help="names per image (default 3)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import UnidentifiedImageError
    from transformers import pipeline
    from transformers.image_utils import load_image

    from koin_hf.errors import KoinError
    from koin_hf.evaluation import default_device

    if args.top_k < 1:
        raise KoinError(f"--top_k must be at least 1, got {args.top_k}.")
    images = []
    for path in args.images:
        # Check every image before loading the model: a typo should not cost a model load.
        if "://" not in path and not Path(path).is_file():
            raise KoinError(f"image {path!r} does not exist.")
        try:
            images.append(load_image(path))
        except (OSError, ValueError, UnidentifiedImageError) as err:
            raise KoinError(f"cannot read image {path!r}: {err}") from err
    try:
        classifier = pipeline(
            "image-classification", model=args.model, device=args.device or default_device()
        )
    except (OSError, ValueError) as err:
        raise KoinError(f"cannot load the model {args.model!r}: {err}") from err
    for path, predictions in zip(args.images, classifier(images, top_k=args.top_k), strict=True):
        print(path)
        for rank, prediction in enumerate(predictions, start=1):
            print(f"  {rank}. {prediction['label']}  {prediction['score']:.4f}")
    return 0
