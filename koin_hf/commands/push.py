"""`koin push MODEL_DIR --repo_id user/name`: upload a trained model folder with its card."""

from __future__ import annotations

import argparse


def add_hub_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """Flags shared by `koin push` and `koin push-dataset`."""
    parser.add_argument("--repo_id", required=True, help=f"Hub repository, e.g. {example}")
    parser.add_argument(
        "--private",
        action="store_true",
        help="create the repo as private (an existing repo keeps its visibility)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="Hub token with write access (default: HF_TOKEN or the `hf auth login` token; "
        "prefer those, a token on the command line lands in shell history)",
    )
    parser.add_argument(
        "--revision", default=None, help="branch to commit to, created if missing (default: main)"
    )
    parser.add_argument("--commit_message", default=None, help="commit message")
    parser.add_argument(
        "--dry_run",
        action="store_true",
        help="list every file that would be uploaded (path and size) and what is left out, "
        "then stop: nothing is uploaded and no token is needed",
    )


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir",
        help="trained model folder (config.json, model.safetensors, koin_training.json, ...)",
    )
    add_hub_arguments(parser, "user/koin-vit-5shot")
    parser.add_argument(
        "--overwrite_card",
        action="store_true",
        help="replace an existing README.md with a freshly rendered model card",
    )
    parser.add_argument(
        "--with_demo",
        action="store_true",
        help="also write and upload a Space-ready app.py (the `koin demo` app on this model) and "
        "requirements.txt beside the model (docs/DEPLOY.md)",
    )
    parser.add_argument(
        "--demo_requirement",
        default=None,
        help="the requirements.txt line that installs koin-hf in a Space (default: "
        "koin-hf[demo]==<this version>; e.g. a git+https:// URL or a wheel's URL)",
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.errors import KoinError
    from koin_hf.hub.push import describe_push, push_model

    extra_files = None
    if args.with_demo:
        from koin_hf.deploy.space import space_files

        space_files(args.model_dir, args.repo_id, args.demo_requirement)  # fail before the Hub

        def extra_files(full_id: str) -> dict[str, bytes]:
            return space_files(args.model_dir, full_id, args.demo_requirement)

    elif args.demo_requirement is not None:
        raise KoinError("--demo_requirement goes with --with_demo.")
    result = push_model(
        args.model_dir,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.commit_message,
        overwrite_card=args.overwrite_card,
        dry_run=args.dry_run,
        extra_files=extra_files,
    )
    print("\n".join(describe_push(result, args.model_dir)))
    return 0
