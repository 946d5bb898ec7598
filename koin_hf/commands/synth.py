"""`koin synth OUT_DIR`: write the embedded synthetic KoIn in the raw KoIn layout."""

from __future__ import annotations

import argparse

from koin_hf.synthetic.writer import DEFAULT_COUNTS


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Generate a synthetic stand-in for KoIn (drawn faces; identity lives only in the face) as "
        "classes.csv, normal_cases/{train,test}, hard_cases/test (masks, hats) and "
        "Group_cases/test (the labelled person among 2-5 others). The same seed gives the same "
        "bytes. Feed the folder to `koin prepare`."
    )
    parser.add_argument("out_dir", help="new or empty folder to write into")
    parser.add_argument("--num_classes", type=int, default=10, help="identities (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: people and photos")
    for subset, what in (
        ("train", "normal training photos"),
        ("test", "normal test photos"),
        ("hard", "hard test photos (masks, hats, both)"),
        ("group", "group photos"),
    ):
        parser.add_argument(
            f"--{subset}_per_class",
            type=int,
            default=DEFAULT_COUNTS[subset],
            help=f"{what} per identity (default {DEFAULT_COUNTS[subset]}; 0 skips the folder)",
        )
    parser.add_argument(
        "--unknown_classes",
        type=int,
        default=0,
        help="further people never in train, in unknown_cases/test/<id>/ (for koin evaluate "
        "--open_set; default 0)",
    )
    parser.add_argument(
        "--unknown_per_class",
        type=int,
        default=DEFAULT_COUNTS["test"],
        help=f"photos per unknown person (default {DEFAULT_COUNTS['test']})",
    )
    parser.add_argument(
        "--image_size",
        default="small",
        help="'small' (about 256x320, varied per photo; group photos landscape), "
        "'phone' (1080x1350) or an exact WxH such as 640x800",
    )
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    parser.add_argument(
        "--workers", type=int, default=None, help="rendering threads (default: up to 4)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from koin_hf.synthetic.writer import generate_synthetic_koin

    out = generate_synthetic_koin(
        args.out_dir,
        num_classes=args.num_classes,
        seed=args.seed,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        hard_per_class=args.hard_per_class,
        group_per_class=args.group_per_class,
        unknown_classes=args.unknown_classes,
        unknown_per_class=args.unknown_per_class,
        image_size=args.image_size,
        quality=args.quality,
        workers=args.workers,
        progress=not args.quiet,
    )
    per_class = args.train_per_class + args.test_per_class + args.hard_per_class
    total = args.num_classes * (per_class + args.group_per_class)
    total += args.unknown_classes * args.unknown_per_class
    people = args.num_classes + args.unknown_classes
    print(f"wrote {total} synthetic photos of {people} identities to {out}")
    print(f"next: koin prepare {out} <prepared_dir>")
    return 0
