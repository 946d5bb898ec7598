"""`koin push-dataset DATA_DIR --repo_id user/koin`: upload a prepared dataset folder."""

from __future__ import annotations

import argparse

from koin_hf.commands.push import add_hub_arguments


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="prepared dataset folder written by `koin prepare`")
    add_hub_arguments(parser, "user/koin")


def run(args: argparse.Namespace) -> int:
    from koin_hf.hub.push import describe_push, push_dataset

    result = push_dataset(
        args.data_dir,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.commit_message,
        dry_run=args.dry_run,
    )
    print("\n".join(describe_push(result, args.data_dir)))
    if not result.dry_run:
        revision = f', revision="{args.revision}"' if args.revision else ""
        print(f'Load it with: datasets.load_dataset("{result.repo_id}", "hard"{revision})')
    return 0
