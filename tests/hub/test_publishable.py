"""What a push may upload: regular files inside the folder, no credentials, no token bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from koin_hf.errors import KoinError
from koin_hf.hub.publishable import (
    Excluded,
    contains_secret,
    is_credential_name,
    secrets_in_use,
    select_files,
)

TOKEN = "hf_selectionTestToken0123456789abcdef"


def write(path: Path, data: bytes | str = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_credentials_hidden_checkpoints_and_token_bytes_are_excluded_and_named(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "special_tokens_map.json",
                 "added_tokens.json", "sub/notes.txt"):  # fmt: skip
        write(folder / name)
    for name in ("token", "hf_token.txt", "credentials.json", "id_rsa", "server.pem", ".env",
                 "sub/.netrc", "sub/.git-credentials", "api.key"):  # fmt: skip
        write(folder / name, "secret")
    write(folder / "training_args.bin", b"\x80\x04pickle..." + TOKEN.encode() + b"...")
    write(folder / "checkpoint-5" / "model.safetensors")
    write(folder / "checkpoint-5" / "optimizer.pt")
    write(folder / ".huggingface" / "token", TOKEN)
    write(folder / ".cache" / "x")
    os.mkfifo(folder / "pipe")

    selection = select_files(folder, skip_dirs=("checkpoint-*",), secrets=[TOKEN])

    assert sorted(selection.files) == [
        "added_tokens.json",  # tokenizer files are not credentials
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "sub/notes.txt",
        "tokenizer.json",
    ]
    assert sorted(selection.excluded, key=lambda e: e.path) == [
        Excluded(".cache/", "hidden folder, 1 file"),
        Excluded(".env", "credential-like name"),
        Excluded(".huggingface/", "credential folder, 1 file"),
        Excluded("api.key", "credential-like name"),
        Excluded("checkpoint-5/", "Trainer checkpoint folder, 2 files"),
        Excluded("credentials.json", "credential-like name"),
        Excluded("hf_token.txt", "credential-like name"),
        Excluded("id_rsa", "credential-like name"),
        Excluded("pipe", "not a regular file"),
        Excluded("server.pem", "credential-like name"),
        Excluded("sub/.git-credentials", "credential-like name"),
        Excluded("sub/.netrc", "credential-like name"),
        Excluded("token", "credential-like name"),
        Excluded("training_args.bin", "contains the Hub token in use"),
    ]


@pytest.mark.parametrize("target", ["file", "folder", "missing"])
def test_a_link_leading_outside_refuses_the_whole_selection(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "model"
    write(folder / "config.json")
    outside = {"file": write(tmp_path / "passwd", "root:x:0:0"), "folder": tmp_path,
               "missing": tmp_path / "nowhere"}[target]  # fmt: skip
    (folder / "sub").mkdir()
    (folder / "sub" / "link").symlink_to(outside)

    with pytest.raises(KoinError) as raised:
        select_files(folder, skip_dirs=(), secrets=[])
    message = str(raised.value)
    assert message.startswith(f"{folder / 'sub' / 'link'} is a symbolic link to {outside}")
    assert f"outside {folder}: refusing to publish" in message and "\n" not in message


def test_links_inside_are_followed_for_files_and_skipped_for_folders(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    weights = write(folder / "checkpoint-9" / "model.safetensors", b"weights")
    write(folder / "config.json")
    write(folder / ".env", "secret")
    (folder / "model.safetensors").symlink_to("checkpoint-9/model.safetensors")  # relative
    (folder / "latest").symlink_to(folder / "checkpoint-9")
    (folder / "settings").symlink_to(".env")  # a link does not launder a credential
    (folder / "dangling").symlink_to(folder / "gone")

    selection = select_files(folder, skip_dirs=("checkpoint-*",), secrets=[])

    assert selection.files == {
        "config.json": folder / "config.json",
        "model.safetensors": weights.resolve(),  # the target's bytes under the link's name
    }
    assert sorted(selection.excluded, key=lambda e: e.path) == [
        Excluded(".env", "credential-like name"),
        Excluded("checkpoint-9/", "Trainer checkpoint folder, 1 file"),
        Excluded("dangling", "broken link"),
        Excluded("latest/", "link to a folder inside"),
        Excluded("settings", "credential-like name"),
    ]


def test_a_folder_reached_through_a_link_is_read_where_it_lies(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "model"
    write(real / "config.json")
    (tmp_path / "alias").symlink_to(real)
    selection = select_files(tmp_path / "alias", skip_dirs=(), secrets=[])
    assert list(selection.files) == ["config.json"]


def test_token_scan_reads_in_overlapping_chunks(tmp_path: Path) -> None:
    chunk = 1 << 20
    across = write(tmp_path / "a.bin", b"\0" * (chunk - 5) + TOKEN.encode() + b"\0" * 10)
    clean = write(tmp_path / "b.bin", b"\0" * (chunk + 100))
    assert contains_secret(across, [TOKEN]) and not contains_secret(clean, [TOKEN])
    assert not contains_secret(across, [])


def test_secrets_in_use_come_from_the_argument_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_fromTheEnvironment000")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert secrets_in_use(TOKEN, None, "short") == [TOKEN, "hf_fromTheEnvironment000"]


@pytest.mark.parametrize(
    ("name", "credential"),
    [("hf_token", True), ("HF_TOKEN.TXT", True), ("my-token.txt", True), ("client_secret_1.json", True),
     ("id_ed25519.pub", True), ("tokenizer_config.json", False), ("vocab.txt", False),
     ("preprocessor_config.json", False), ("keys.json", False)],
)  # fmt: skip
def test_credential_names(name: str, credential: bool) -> None:
    assert is_credential_name(name) is credential
