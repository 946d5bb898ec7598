"""`koin predict MODEL IMAGE [IMAGE ...]`: the top-k names for each image, through pipeline()."""

from __future__ import annotations

import argparse

from koin_hf.data.images import MAX_MEGAPIXELS_HELP


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a koin-hf output dir, a Hub id, or any image classifier")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (or URLs)")
    parser.add_argument("--top_k", type=int, default=3, help="names per image (default 3)")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--max_megapixels", type=float, default=None, help=MAX_MEGAPIXELS_HELP)
    parser.add_argument(
        "--closed_set",
        action="store_true",
        help="always name someone, even below the model's 'unknown' threshold (koin calibrate)",
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.evaluation.predict import predict

    predictions = predict(
        args.model,
        args.images,
        top_k=args.top_k,
        device=args.device,
        max_megapixels=args.max_megapixels,
        open_set=not args.closed_set,
    )
    from koin_hf.evaluation.open_set import split_unknown

    for path, answer in zip(args.images, predictions, strict=True):
        print(path)
        unknown, ranked = split_unknown(answer)
        if unknown is not None:
            print(
                f"  unknown (top score {unknown['score']:.4f} <= threshold "
                f"{unknown['threshold']:.4f}); closest:"
            )
        for rank, prediction in enumerate(ranked, start=1):
            print(f"  {rank}. {prediction['label']}  {prediction['score']:.4f}")
    return 0
