"""Publishing to the Hugging Face Hub: a trained model folder or a prepared dataset folder.

Both pushes are one commit made with `huggingface_hub` (create_repo + create_commit), so a
failure leaves the repo as it was. Nothing in the local folder changes before the commit has
succeeded: the model card is rendered in memory and uploaded from memory, and only afterwards
written to `README.md` (atomically) when the folder had none. Tokens are passed to
huggingface_hub only; they never enter a message, a card or a file.

Hub failures a user can cause (no token, a rejected token, an unreachable or offline Hub, a repo
they cannot write to) become one-sentence `KoinError`s. The cards themselves are rendered by
`koin_hf.hub.model_card` and `koin_hf.hub.dataset_card`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from koin_hf.errors import KoinError
from koin_hf.hub.cards import atomic_write_text, is_hub_id
from koin_hf.hub.dataset_card import read_card_header
from koin_hf.hub.model_card import render_model_card
from koin_hf.version import __version__

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Trainer's own push skips these; so do we (intermediate checkpoints can be many GB).
SKIPPED_MODEL_DIRS = ("checkpoint-*", "__pycache__")
TRAINER_CARD_TAG = "generated_from_trainer"


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    overwrite_card: bool = False,
) -> tuple[str, str]:
    """Upload a trained model folder with its model card; return (repo URL, commit id).

    The card: an existing README.md is uploaded as it is, unless `overwrite_card` is set or it is
    the generic card Trainer writes (tag `generated_from_trainer`); otherwise the koin card is
    rendered from config.json / koin_training.json / all_results.json and, once the push has
    succeeded, also saved as the folder's README.md.
    """
    folder = _existing_folder(model_dir, "model folder")
    if not (folder / "config.json").is_file():
        raise KoinError(f"{folder} has no config.json: is it a trained model folder?")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise KoinError(f"{folder} has no model weights ({' or '.join(WEIGHT_FILES[::2])})")
    _check_repo_id(repo_id)
    readme = folder / "README.md"
    replace_card = overwrite_card or not readme.is_file() or _is_trainer_card(readme)
    if replace_card:  # render once now so a broken metrics file fails before any network call
        render_model_card(folder, repo_id=repo_id)

    def card_from_memory(full_id: str) -> dict[str, bytes]:
        # rendered again with the full id: a bare name gets the token owner's namespace
        return {"README.md": render_model_card(folder, repo_id=full_id).encode("utf-8")}

    url, commit, extra = _push_folder(
        folder,
        repo_id,
        repo_type="model",
        private=private,
        token=token,
        revision=revision,
        commit_message=commit_message or "Upload model trained with koin-hf",
        skip_dirs=SKIPPED_MODEL_DIRS,
        extra_files=card_from_memory if replace_card else None,
    )
    if replace_card:  # the push succeeded: keep the local folder in step with the repo
        atomic_write_text(readme, extra["README.md"].decode("utf-8"))
    return url, commit


def push_dataset(
    data_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> tuple[str, str]:
    """Upload a prepared dataset folder (parquet + README.md with YAML `configs:`) as a dataset repo.

    Returns (repo URL, commit id); `load_dataset(repo_id, "hard")` works once it is pushed. The
    absolute `source` path in prepare_report.json is reduced to its folder name in the upload, so
    a local path never reaches the Hub (the local file is left untouched).
    """
    folder = _existing_folder(data_dir, "dataset folder")
    _check_repo_id(repo_id)
    _check_prepared_dataset(folder)
    report = folder / "prepare_report.json"

    def sanitised_report(_full_id: str) -> dict[str, bytes]:
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or not data.get("source"):
            return {}
        data["source"] = Path(str(data["source"])).name
        return {
            report.name: (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        }

    url, commit, _ = _push_folder(
        folder,
        repo_id,
        repo_type="dataset",
        private=private,
        token=token,
        revision=revision,
        commit_message=commit_message or "Upload KoIn dataset prepared with koin-hf",
        skip_dirs=("__pycache__",),
        extra_files=sanitised_report if report.is_file() else None,
    )
    return url, commit


# --- checks -------------------------------------------------------------------------------------


def _existing_folder(path: str | Path, what: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise KoinError(f"{what} {folder} does not exist")
    return folder


def _check_repo_id(repo_id: str) -> None:
    if not is_hub_id(repo_id):
        raise KoinError(f"--repo_id {repo_id!r} is not a valid Hub id (expected user/name)")


def _is_trainer_card(readme: Path) -> bool:
    with contextlib.suppress(KoinError, OSError, UnicodeDecodeError):
        tags = read_card_header(readme).get("tags") or []
        return TRAINER_CARD_TAG in tags
    return False


def _check_prepared_dataset(folder: Path) -> None:
    """The folder must be what `load_dataset` reads: YAML configs whose data files exist."""
    header = read_card_header(folder / "README.md")
    configs = header.get("configs")
    if not configs:
        raise KoinError(
            f"{folder / 'README.md'} has no YAML `configs:`: is {folder} a prepared dataset (koin prepare)?"
        )
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    for config in configs:
        data_files = config.get("data_files") if isinstance(config, dict) else None
        entries = data_files if isinstance(data_files, list) else [data_files]
        for entry in entries:
            patterns = entry.get("path") if isinstance(entry, dict) else entry
            for pattern in patterns if isinstance(patterns, list) else [patterns]:
                if pattern and not fnmatch.filter(files, str(pattern)):
                    name = config.get("config_name", "?") if isinstance(config, dict) else "?"
                    raise KoinError(
                        f"config {name!r} in {folder / 'README.md'} lists {pattern!r}, which matches no file"
                    )


def _files_to_upload(folder: Path, skip_dirs: tuple[str, ...]) -> list[Path]:
    """Every file under the folder except hidden ones and the skipped folders."""
    files = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in parts):
            continue
        if any(fnmatch.fnmatch(part, pattern) for part in parts[:-1] for pattern in skip_dirs):
            continue
        if path.is_file():
            files.append(path)
    return files


# --- the push -----------------------------------------------------------------------------------


def _push_folder(
    folder: Path,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    token: str | None,
    revision: str | None,
    commit_message: str,
    skip_dirs: tuple[str, ...],
    extra_files: Any = None,
) -> tuple[str, str, dict[str, bytes]]:
    """create_repo + one commit of the folder; `extra_files(full_id)` adds/replaces files from memory."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token

    files = _files_to_upload(folder, skip_dirs)
    if not files:
        raise KoinError(f"{folder} holds no files to upload")
    token = token or get_token()
    if not token:
        raise KoinError(
            "no Hugging Face token found: set HF_TOKEN, pass --token, or run `hf auth login`"
        )
    endpoint = constants.ENDPOINT
    api = HfApi(token=token, library_name="koin-hf", library_version=__version__)
    with _translate_hub_errors(endpoint, repo_id):
        user = api.whoami()
        full_id = repo_id if "/" in repo_id else f"{user['name']}/{repo_id}"
        extra = extra_files(full_id) if extra_files else {}
        repo_url = api.create_repo(full_id, repo_type=repo_type, private=private, exist_ok=True)
        full_id = repo_url.repo_id
        branch = revision or constants.DEFAULT_REVISION
        if branch != constants.DEFAULT_REVISION:
            api.create_branch(full_id, branch=branch, repo_type=repo_type, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=data)
            for name, data in extra.items()
        ]
        operations += [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path))
            for path in files
            if (rel := path.relative_to(folder).as_posix()) not in extra
        ]
        info = api.create_commit(
            full_id, operations, commit_message=commit_message, repo_type=repo_type, revision=branch
        )
    url = str(repo_url) if branch == constants.DEFAULT_REVISION else f"{repo_url}/tree/{branch}"
    return url, info.oid, extra


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection/timeouts of whichever HTTP stack this huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
    ):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(__import__(module), name))
    return tuple(errors)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextlib.contextmanager
def _translate_hub_errors(endpoint: str, repo_id: str) -> Iterator[None]:
    """Turn what huggingface_hub raises for user-fixable problems into one KoinError sentence."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except KoinError:
        raise
    except Exception as err:
        for cause in _chain(err):
            if isinstance(cause, OfflineModeIsEnabled):
                raise KoinError("HF_HUB_OFFLINE=1 is set: unset it to push to the Hub") from None
            if isinstance(cause, LocalTokenNotFoundError):
                raise KoinError(
                    "no Hugging Face token found: set HF_TOKEN, pass --token, or run `hf auth login`"
                ) from None
            if isinstance(cause, HfHubHTTPError) and cause.response is not None:
                raise KoinError(_http_error_sentence(cause, endpoint, repo_id)) from None
            if isinstance(cause, _network_errors()):
                reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
                raise KoinError(
                    f"cannot reach the Hugging Face Hub at {endpoint} ({reason}); check your network or HF_ENDPOINT"
                ) from None
            if isinstance(cause, ValueError) and "Invalid metadata in README.md" in str(cause):
                detail = " ".join(str(cause).split())
                raise KoinError(f"the Hub rejected the card's metadata: {detail}") from None
        raise


def _http_error_sentence(err: Any, endpoint: str, repo_id: str) -> str:
    status = err.response.status_code
    if status == 401:
        return (
            f"the Hub at {endpoint} rejected the token (401 Unauthorized): check HF_TOKEN or --token, "
            "or log in again with `hf auth login`"
        )
    if status == 403:
        return f"your token may not write to {repo_id} (403 Forbidden): use a write token and a namespace you own"
    server_message = (err.server_message or "").strip().splitlines()
    detail = server_message[0] if server_message else f"HTTP {status}"
    return f"the Hub refused the push to {repo_id} (HTTP {status}: {detail})"
