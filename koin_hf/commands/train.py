"""`koin train ...`: the same as `python train.py ...` (use `accelerate launch -m koin_hf.training` for several processes)."""

from __future__ import annotations

import argparse

# train.py's own parser reads every argument: `koin`'s parser would take `koin train
# --learning_rate 0.1` for a flag of its own (argparse's REMAINDER does not start at a flag).
# So `koin train --help` is train.py's help, listing every flag and the shipped presets.
PASS_ARGUMENTS_THROUGH = True


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        help="presets and flags of train.py (see `koin train --help`)",
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.training.run import main

    arguments = list(args.arguments)
    if arguments[:1] == ["--"]:  # `koin train -- --help`: the separator some users type
        arguments = arguments[1:]
    return main(arguments, prog="koin train")
