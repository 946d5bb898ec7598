"""`koin prepare RAW_DIR OUT_DIR`."""

from __future__ import annotations

import argparse

from koin_hf.data.images import MAX_MEGAPIXELS_HELP
from koin_hf.dataset_script.koin import DEFAULT_IMAGE_SIZE


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "raw_dir", help="raw KoIn folder (normal_cases/, hard_cases/, ...) or a .zip of it"
    )
    parser.add_argument(
        "out_dir", help="new or empty folder for the prepared dataset (e.g. ./koin)"
    )
    parser.add_argument(
        "--image_size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help="store images with their shorter side at most this many pixels; 0 keeps the originals "
        f"(default {DEFAULT_IMAGE_SIZE}: models train at 224, smaller files decode much faster)",
    )
    parser.add_argument("--num_proc", type=int, default=None, help="processes for decoding")
    parser.add_argument(
        "--max_megapixels",
        type=float,
        default=None,
        help=MAX_MEGAPIXELS_HELP + "; such images are skipped and listed with the reason",
    )
    parser.add_argument(
        "--faces",
        action="store_true",
        help="also write face crops as configs normal-faces, hard-faces, group-faces "
        "(docs/FACES.md; needs the faces extra)",
    )
    parser.add_argument(
        "--face_detector",
        default=None,
        help="detector for --faces (default blazeface; blazeface-full, blazeface-short, opencv-haar; "
        "'recorded' reads koin synth's faces.jsonl: ground truth, synthetic data only)",
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.data.prepare import prepare_koin

    extra = None
    if args.face_detector and not args.faces:
        from koin_hf.errors import KoinError

        raise KoinError("--face_detector only applies with --faces")
    if args.faces:
        from koin_hf.faces.prepare import make_face_configs

        extra = make_face_configs(
            detector=args.face_detector or "blazeface",
            image_size=args.image_size,
            max_megapixels=args.max_megapixels,
        )
    prepare_koin(
        args.raw_dir,
        args.out_dir,
        image_size=args.image_size,
        num_proc=args.num_proc,
        max_megapixels=args.max_megapixels,
        extra_configs=extra,
    )
    return 0
