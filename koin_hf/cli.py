"""The `koin` console command: a thin dispatcher over `koin_hf.commands.*`.

Each subcommand lives in its own module with `register(subparsers)` and `run(args)`, imported
lazily so `koin --help` stays fast and a heavy import (torch, transformers) is paid only by the
subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from koin_hf.errors import KoinError
from koin_hf.flags import KoinArgumentParser
from koin_hf.runtime import configure_process
from koin_hf.version import __version__

# name -> (module under koin_hf.commands, one-line help). The one place that lists subcommands.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write the embedded synthetic KoIn in the raw KoIn layout"),
    "prepare": ("prepare", "turn a raw KoIn folder or zip into a script-free Hub dataset folder"),
    "train": ("train", "fine-tune an image classifier (same arguments as train.py)"),
    "evaluate": ("evaluate", "score a model top-1/top-3 on the normal, hard and group test sets"),
    "predict": ("predict", "print the top-3 names for a few images"),
    "recognize": ("recognize", "find every face in photos, name each (top-3), draw the boxes"),
    "embed": ("embed", "cache the image embeddings of a model on a dataset (parquet)"),
    "probe": ("probe", "fit the paper's linear probe (logistic regression) on cached embeddings"),
    "calibrate": ("calibrate", "fit a temperature and an 'unknown' threshold for a model"),
    "enroll": ("enroll", "add a person to a model from a few photos, without training"),
    "unenroll": ("unenroll", "remove a person from a model"),
    "push": ("push", "upload a trained model dir with its model card to the Hub"),
    "push-dataset": ("push_dataset", "upload a prepared dataset dir with its card to the Hub"),
    "export": ("export", "export a model to ONNX, checked against PyTorch on real photos"),
    "demo": ("demo", "a browser demo (Gradio): a photo in, the top-3 names out"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = KoinArgumentParser(
        prog="koin", description="KoIn face-recognition benchmark tools for the Hugging Face stack."
    )
    parser.add_argument("--version", action="version", version=f"koin-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Register every subcommand with its help line; the module's own arguments are added only when
    # that subcommand is chosen, so `koin --help` does not import torch.
    for name, (_module, help_text) in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(f"koin_hf.commands.{module_name}")
    parser = KoinArgumentParser(prog=f"koin {name}", description=help_text)
    module.register(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help", "--version") and not argv[0].startswith("-"):
            top.error(f"unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}")
        top.parse_args(argv or ["--help"])
        return 0
    # Before any subcommand imports torch: OMP_WAIT_POLICY is read when torch loads OpenMP.
    configure_process()
    parser, module = _command_parser(argv[0])
    if getattr(module, "PASS_ARGUMENTS_THROUGH", False):  # the subcommand parses them itself
        args = argparse.Namespace(arguments=argv[1:])
    else:
        args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KoinError as err:
        # Errors a user can cause are one sentence, not a traceback.
        print(f"koin {argv[0]}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
