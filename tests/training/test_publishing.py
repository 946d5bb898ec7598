"""train.py --hub_token / --push_to_hub: the token never reaches a file, the push is koin push's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_server import TEST_TOKEN, TEST_USER, HubServer
from rawkoin import make_raw_koin

from koin_hf.data.prepare import prepare_koin
from koin_hf.errors import KoinError
from koin_hf.training.arguments import parse_arguments
from koin_hf.training.publishing import take_hub_settings

REPO = Path(__file__).resolve().parents[2]


def files_holding(token: str, *folders: Path) -> list[str]:
    """Every file under the folders whose bytes contain the token (links are not followed)."""
    found = []
    for folder in folders:
        for current, _, names in os.walk(folder):
            for name in names:
                path = Path(current) / name
                if path.is_file() and not path.is_symlink() and token.encode() in path.read_bytes():
                    found.append(str(path))
    return found


def test_take_hub_settings_scrubs_the_token_even_without_a_push() -> None:
    *_, args = parse_arguments(["--output_dir", "out/koin-x", "--hub_token", TEST_TOKEN])
    assert take_hub_settings(args) is None
    assert args.hub_token is None and TEST_TOKEN not in repr(args)


def test_take_hub_settings_moves_the_push_out_of_trainer(tmp_path: Path) -> None:
    *_, args = parse_arguments(["--output_dir", str(tmp_path / "koin-x"), "--push_to_hub",
                                "--hub_token", TEST_TOKEN, "--hub_private_repo", "true"])  # fmt: skip
    settings = take_hub_settings(args)
    assert (settings.repo_id, settings.private, settings.token) == ("koin-x", True, TEST_TOKEN)
    assert args.hub_token is None and args.push_to_hub is False  # Trainer neither saves nor pushes
    assert TEST_TOKEN not in repr(settings)


def test_push_to_hub_without_a_token_or_with_a_bad_id_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    *_, args = parse_arguments(["--output_dir", str(tmp_path / "o"), "--push_to_hub"])
    with pytest.raises(
        KoinError, match=r"^--push_to_hub: no Hugging Face token found.*--hub_token"
    ):
        take_hub_settings(args)
    *_, args = parse_arguments(["--output_dir", str(tmp_path / "o"), "--push_to_hub",
                                "--hub_model_id", "me/bad name", "--hub_token", TEST_TOKEN])  # fmt: skip
    with pytest.raises(KoinError, match="--hub_model_id 'me/bad name' is not a valid Hub id"):
        take_hub_settings(args)


@pytest.mark.slow
def test_a_training_run_with_hub_token_writes_the_token_nowhere(
    hub: HubServer, tmp_path: Path
) -> None:
    """A real run with checkpoints and the end-of-run push: the token's bytes are in no file under
    the output folder, HF_HOME (datasets cache included), KOIN_HF_CACHE or TMPDIR, nor on the Hub."""
    raw = make_raw_koin(
        tmp_path / "raw",
        per_split={"normal_cases/train": 6, "normal_cases/test": 2, "hard_cases/test": 2},
    )
    prepared = tmp_path / "prepared"
    prepare_koin(raw, prepared, verbose=False)
    out, home, cache, tmp = (tmp_path / name for name in ("out", "home", "koin-cache", "tmp"))
    tmp.mkdir()
    env = hub.client_env(home, token=None)  # the token comes only from --hub_token
    env.update(KOIN_HF_CACHE=str(cache), TMPDIR=str(tmp))
    repo_id = f"{TEST_USER}/koin-token-test"
    command = [sys.executable, str(REPO / "train.py"), "--dataset_name", str(prepared),
               "--output_dir", str(out), "--model_name_or_path", "vit-tiny", "--max_steps", "2",
               "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "1",
               "--save_steps", "1", "--per_device_train_batch_size", "4", "--use_cpu", "true",
               "--keep_checkpoints",
               "--push_to_hub", "--hub_model_id", repo_id, "--hub_token", TEST_TOKEN]  # fmt: skip

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted(out.glob("checkpoints/checkpoint-*"))
    assert checkpoints and all((c / "training_args.bin").is_file() for c in checkpoints)
    assert (out / "training_args.bin").is_file()
    assert files_holding(TEST_TOKEN, out, home, cache, tmp, prepared) == []
    assert TEST_TOKEN not in result.stdout + result.stderr
    saved = torch.load(out / "training_args.bin", weights_only=False)
    assert saved.hub_token is None and saved.hub_model_id == repo_id

    # the push went through koin push: its output lines, its card, no checkpoint, no token
    assert f"Pushed {out} to {hub.url}/{repo_id}" in result.stdout
    remote = hub.repo_files(repo_id)
    assert "model.safetensors" in remote and "training_args.bin" in remote
    assert not any(name.startswith(("checkpoint-", "checkpoints/")) for name in remote)
    assert "koin-hf" in remote["README.md"].decode() and "generated_from_trainer" not in (
        remote["README.md"].decode()
    )
    assert not any(TEST_TOKEN.encode() in data for data in remote.values())
    assert (out / "README.md").read_bytes() == remote["README.md"]
