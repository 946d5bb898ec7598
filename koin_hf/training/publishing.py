"""train.py's `--push_to_hub` and `--hub_token`, kept out of every file the run writes.

Trainer pickles its TrainingArguments into `training_args.bin` (in the output folder and every
checkpoint), so a `--hub_token` left in them lands on disk in plain text, and Trainer's own push
uploads the folder with its own, looser rules (and pushes checkpoints while training). So, before
anything is built or saved, `take_hub_settings` moves the token and the push settings out of the
arguments (the token stays in this process's memory only), and at the end `push_trained_model`
publishes the output folder with `koin push`'s function: the same file selection, the koin card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from koin_hf.errors import KoinError
from koin_hf.hub.cards import is_hub_id
from koin_hf.hub.push import NO_TOKEN, describe_push, push_model


@dataclass(frozen=True)
class HubSettings:
    """Where train.py publishes at the end; `token` never leaves memory (not even in repr)."""

    repo_id: str
    private: bool
    revision: str | None
    token: str | None = field(default=None, repr=False)


def take_hub_settings(training_args) -> HubSettings | None:
    """Scrub the Hub token and the push request from TrainingArguments; return the push to do.

    Always sets `hub_token` to None and `push_to_hub` to False, so neither training_args.bin nor
    Trainer ever sees them. With `--push_to_hub`, checks now (before training) that there is a
    token and a valid repo id, so a long run does not fail at its last step.
    """
    token = training_args.hub_token or None
    training_args.hub_token = None
    if not training_args.push_to_hub:
        return None
    training_args.push_to_hub = False
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).absolute().name
    if not is_hub_id(repo_id):
        raise KoinError(
            f"--hub_model_id {repo_id!r} is not a valid Hub id (expected user/name)"
            if training_args.hub_model_id
            else f"--push_to_hub: the output folder name {repo_id!r} is no valid Hub repo name; "
            "pass --hub_model_id user/name"
        )
    from huggingface_hub import get_token

    if not (token or get_token()):
        raise KoinError(f"--push_to_hub: {NO_TOKEN.replace('--token', '--hub_token')}")
    return HubSettings(
        repo_id=repo_id,
        private=bool(training_args.hub_private_repo),
        revision=training_args.hub_revision,
        token=token,
    )


def push_trained_model(settings: HubSettings, output_dir: str | Path) -> None:
    """Publish the finished output folder as `koin push` would, and print what was uploaded."""
    try:
        result = push_model(
            output_dir,
            settings.repo_id,
            private=settings.private,
            token=settings.token,
            revision=settings.revision,
            commit_message="koin-hf: end of training",
        )
    except KoinError as err:
        raise KoinError(
            f"{err} (the trained model is saved in {output_dir}; "
            f"publish it later with `koin push {output_dir} --repo_id {settings.repo_id}`)"
        ) from None
    print("\n".join(describe_push(result, output_dir)))
