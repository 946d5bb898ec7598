"""`koin train ...`: the same as `python train.py ...` (use `accelerate launch train.py` for several processes)."""

from __future__ import annotations

import argparse

# train.py's own parser reads every argument: `koin`'s parser would take `koin train
# --learning_rate 0.1` for a flag of its own (argparse's REMAINDER does not start at a flag).
PASS_ARGUMENTS_THROUGH = True


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arguments", nargs=argparse.REMAINDER, help="arguments of train.py (see train.py --help)"
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.training.run import main

    return main(args.arguments, prog="koin train")
