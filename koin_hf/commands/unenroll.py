"""`koin unenroll MODEL --name NAME`: remove a person (a head row) from a model folder."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Remove a person from a model folder: their head row and label."
    parser.add_argument("model", help="a local koin-hf model folder (it is rewritten)")
    parser.add_argument("--name", required=True, help="the label to remove")
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from koin_hf.training.enroll import unenroll

    result = unenroll(args.model, args.name, device=args.device)
    how = "enrolled" if result["was_enrolled"] else "trained"
    print(f"removed {result['name']!r} ({how}); the model now knows {result['labels']} people")
    return 0
