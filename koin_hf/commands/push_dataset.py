"""`koin push-dataset DATA_DIR --repo_id user/koin`: upload a prepared dataset folder."""

from __future__ import annotations

import argparse

from koin_hf.commands.push import add_hub_arguments


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="prepared dataset folder written by `koin prepare`")
    add_hub_arguments(parser, "user/koin")


def run(args: argparse.Namespace) -> int:
    from koin_hf.hub.push import push_dataset

    url, commit = push_dataset(
        args.data_dir,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(f"Pushed {args.data_dir} to {url}")
    print(f"commit {commit}")
    print(
        f'Load it with: datasets.load_dataset("{url.split("/datasets/", 1)[-1].split("/tree/")[0]}", "hard")'
    )
    return 0
