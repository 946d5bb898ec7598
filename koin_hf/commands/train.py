"""`koin train ...`: the same as `python train.py ...` (use `accelerate launch train.py` for several processes)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="arguments of train.py (see train.py --help)"
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.training.run import main

    return main(args.train_args)
