"""Which files of a folder may be published: the one place that decides what a push uploads.

Rules, in the order they are applied to everything under the folder (walked without following
links into folders):

1. A symbolic link that points outside the folder (to a file, a folder, or nowhere) stops the
   whole push with a `KoinError` naming it: a link to `/etc/passwd` or `~/.cache/huggingface/token`
   must never be published, and dropping it silently could leave the repo without a file the
   user meant to publish. A link to a file inside the folder is followed (the Hub stores no
   links: the target's bytes are uploaded under the link's name); a link to a folder inside is
   excluded (its files are uploaded from where they really are; following it could loop).
2. Credential-like names are excluded (`CREDENTIAL_NAMES`, `CREDENTIAL_DIRS`), in any folder.
3. Hidden files and folders (`.name`) and the caller's skipped folders (Trainer's
   `checkpoint-*`, `__pycache__`) are excluded.
4. Anything but a regular file (fifo, socket, device) is excluded.
5. A file whose bytes contain a token in use (the one passed, the stored `hf auth login` token,
   `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`) is excluded; e.g. a `training_args.bin` written with
   `--hub_token` by an older koin-hf.

Every exclusion is returned with its reason, for the caller to print: nothing is dropped
silently.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from koin_hf.errors import KoinError

# File names (matched case-insensitively, in any folder) that hold secrets by convention. The
# patterns stay clear of tokenizer files (tokenizer.json, special_tokens_map.json,
# added_tokens.json), which belong in a model repo.
CREDENTIAL_NAMES = (
    # Hugging Face and generic token files
    "token",
    "token.txt",
    "token.json",
    "stored_tokens",
    "hf_token*",
    "*_token.txt",
    "*-token.txt",
    "*.token",
    # credential and secret stores
    "credentials",
    "credentials.*",
    "*_credentials.json",
    "secrets.*",
    "client_secret*.json",
    "service_account*.json",
    "service-account*.json",
    ".env",
    ".env.*",
    ".envrc",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".dockercfg",
    # private keys and key stores
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
)
# Folders that hold credentials by convention (hugging face, ssh, cloud and container clients).
CREDENTIAL_DIRS = (
    ".huggingface",
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".docker",
    ".kube",
    "gcloud",
)
# A shorter "token" could occur by chance in a weights file; real Hub tokens are 37 characters.
MIN_SCANNED_TOKEN_LENGTH = 8
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Excluded:
    """A file or folder left out of the upload. Folders end with `/` and count their files."""

    path: str
    reason: str


@dataclass
class Selection:
    """What a push uploads (`files`: path in the repo -> real file) and what it leaves out."""

    files: dict[str, Path] = field(default_factory=dict)
    excluded: list[Excluded] = field(default_factory=list)


def is_credential_name(name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in CREDENTIAL_NAMES)


def secrets_in_use(*tokens: str | None) -> list[str]:
    """The tokens whose bytes must appear in no uploaded file: those given plus the environment's."""
    candidates = [*tokens, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]
    return [
        token
        for token in dict.fromkeys(t.strip() for t in candidates if t)
        if len(token) >= MIN_SCANNED_TOKEN_LENGTH
    ]


def contains_secret(path: Path, secrets: Iterable[str]) -> bool:
    """True when the file's bytes contain one of `secrets` (read in chunks, overlapping)."""
    needles = [secret.encode("utf-8") for secret in secrets]
    if not needles:
        return False
    overlap = max(len(needle) for needle in needles) - 1
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            window = tail + chunk
            if any(needle in window for needle in needles):
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def bytes_contain_secret(data: bytes, secrets: Iterable[str]) -> bool:
    return any(secret.encode("utf-8") in data for secret in secrets)


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _folder_exclusion(name: str, skip_dirs: tuple[str, ...]) -> str | None:
    if name.lower() in CREDENTIAL_DIRS:
        return "credential folder"
    if name.startswith("."):
        return "hidden folder"
    for pattern in skip_dirs:
        if fnmatch.fnmatchcase(name, pattern):
            checkpoint = pattern in ("checkpoint-*", "checkpoints")
            return "Trainer checkpoint folder" if checkpoint else "skipped folder"
    return None


def _file_exclusion(names: Iterable[str]) -> str | None:
    names = list(names)
    if any(is_credential_name(name) for name in names):
        return "credential-like name"
    if any(name.startswith(".") for name in names):
        return "hidden file"
    return None


def _outside(folder: Path, link: Path, target: str) -> KoinError:
    return KoinError(
        f"{link} is a symbolic link to {target}, outside {folder}: refusing to publish "
        "(replace the link by a copy of the file if it belongs in the repo)"
    )


def select_files(folder: Path, *, skip_dirs: tuple[str, ...], secrets: list[str]) -> Selection:
    """Apply the rules of this module to `folder`; raise KoinError on a link leading outside."""
    root = Path(os.path.realpath(folder))
    selection = Selection()

    def unreadable(err: OSError) -> None:  # os.walk would otherwise skip the folder silently
        raise KoinError(f"cannot read {err.filename} ({err.strerror or err}): nothing was uploaded")

    for current, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=False):
        here = Path(current)
        dirnames.sort()
        kept = []
        for name in dirnames:
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                target = os.path.realpath(path)
                if not Path(target).is_relative_to(root):
                    raise _outside(folder, path, target)
                selection.excluded.append(Excluded(f"{rel}/", "link to a folder inside"))
                continue
            reason = _folder_exclusion(name, skip_dirs)
            if reason:
                count = _count_files(path)
                selection.excluded.append(
                    Excluded(f"{rel}/", f"{reason}, {count} file{'s' * (count != 1)}")
                )
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(folder).as_posix()
            real = path
            names = [name]
            if path.is_symlink():
                target = os.path.realpath(path)
                if not Path(target).is_relative_to(root):
                    raise _outside(folder, path, target)
                real = Path(target)
                names += list(real.relative_to(root).parts)  # a link to .env is still .env
                if not real.exists():
                    selection.excluded.append(Excluded(rel, "broken link"))
                    continue
                if real.is_dir():
                    selection.excluded.append(Excluded(rel, "link to a folder inside"))
                    continue
            reason = _file_exclusion(names)
            try:
                if reason is None and not stat.S_ISREG(os.stat(real).st_mode):
                    reason = "not a regular file"
                if reason is None and contains_secret(real, secrets):
                    reason = "contains the Hub token in use"
            except OSError as err:
                raise KoinError(
                    f"cannot read {path} ({err.strerror or err}): nothing was uploaded"
                ) from None
            if reason:
                selection.excluded.append(Excluded(rel, reason))
            else:
                selection.files[rel] = real
    return selection
