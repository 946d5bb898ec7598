"""Output folders: claimed by one run while it writes them, staged with the user's umask.

`claim_folder(path)` holds a lock file beside the folder (`.NAME.lock`, created with O_EXCL and
holding the pid, host and start time of the run) for as long as the run writes there. A second
run into the same folder is refused at once, with a one-line error naming the lock, instead of
failing, or mixing its files in, after all the work. A lock left by a process that died on this
host is reclaimed; one from another host cannot be checked, so the message says how to remove it.
The lock sits beside the folder, not inside it, so it never ends up in what is published.

`staging_folder_beside(path)` makes the sibling folder a run writes before renaming it into
place. `tempfile.mkdtemp` makes 0700 folders, which keep their mode when renamed: a prepared
dataset on shared storage would be unreadable to colleagues. This one follows the umask.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from koin_hf.errors import KoinError


def lock_path(folder: str | os.PathLike) -> Path:
    """Where the lock of `folder` lives: `.NAME.lock` in its parent."""
    folder = Path(folder).expanduser().absolute()
    return folder.with_name(f".{folder.name}.lock")


def _record(what: str) -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "token": secrets.token_hex(8),  # tells our lock from a later one by the same pid
    }


def _create(lock: Path, record: dict) -> bool:
    """Create the lock atomically; False when it already exists."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    except OSError as err:
        raise KoinError(f"cannot create the lock file {lock} ({err.strerror or err})") from err
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    return True


def _read(lock: Path) -> dict | None:
    """The lock's record; {} when unreadable or half-written; None when it is gone."""
    try:
        text = lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError as err:
        return err.errno != errno.ESRCH
    return True


def _is_stale(record: dict) -> bool:
    """True only when the holder certainly died: same host, and no process with its pid."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    return not _pid_alive(pid)


def _reclaim(lock: Path, stale: dict) -> None:
    """Move a stale lock aside atomically; put it back if it turned out not to be the stale one.

    Two runs may find the same stale lock: the rename lets only one of them remove it. A run
    that renamed a lock someone created in between puts it back (os.link never overwrites).
    """
    aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _read(aside) != stale:
        with contextlib.suppress(FileExistsError):
            os.link(aside, lock)
    aside.unlink(missing_ok=True)


def _holder(record: dict) -> str:
    if not record:
        return "another run (its lock file is empty or unreadable)"
    what = record.get("what") or "another run"
    return (
        f"{what} (pid {record.get('pid')} on {record.get('host')}, started {record.get('started')})"
    )


@contextlib.contextmanager
def claim_folder(path: str | os.PathLike, what: str = "koin prepare") -> Iterator[Path]:
    """Hold the lock of output folder `path` while the block runs; yields the lock file's path.

    `what` names the run in the message another run gets. Raises KoinError, at once, when a
    live run holds the folder. The parent folder is created when missing (the folder itself is
    left alone). The lock is removed on exit, even after an error, and only if it is still ours.
    """
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KoinError(f"cannot create the folder {lock.parent} ({err.strerror or err})") from err
    record = _record(what)
    for _attempt in range(5):
        if _create(lock, record):
            break
        holder = _read(lock)
        if holder is None:  # released between our two looks
            continue
        if not _is_stale(holder):
            raise KoinError(
                f"{Path(path)} is being written by {_holder(holder)}; wait for it to finish, "
                f"or if it is not running any more, delete the lock file {lock}"
            )
        _reclaim(lock, holder)
    else:
        raise KoinError(f"cannot claim {Path(path)}: its lock file {lock} keeps changing")
    try:
        yield lock
    finally:
        if _read(lock) == record:
            lock.unlink(missing_ok=True)


def staging_folder_beside(path: str | os.PathLike, tag: str = "partial") -> Path:
    """A new, empty folder next to `path` (`.NAME.TAG-RANDOM`), created with the user's umask.

    Write a run's output there, then rename it onto `path`: the folder appears complete or not
    at all, readable by whoever the umask lets read it.
    """
    target = Path(path).expanduser()
    for _attempt in range(100):
        candidate = target.with_name(f".{target.name}.{tag}-{secrets.token_hex(4)}")
        try:
            candidate.mkdir()  # mode 0o777 & ~umask, unlike mkdtemp's 0o700
        except FileExistsError:
            continue
        except OSError as err:
            raise KoinError(
                f"cannot create a folder beside {target} ({err.strerror or err})"
            ) from err
        return candidate
    raise KoinError(f"cannot create a folder beside {target}: every name tried exists")


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_mode(path: str | os.PathLike, base_mode: int = 0o666) -> None:
    """chmod a file made by `tempfile.mkstemp` (always 0600) to what a plain open() makes."""
    os.chmod(path, base_mode & ~current_umask())


def follow_umask(folder: str | os.PathLike) -> None:
    """Give every file and folder under `folder` (itself included) the modes the umask allows.

    safetensors writes weights through a temporary file, mode 0600 whatever the umask: a model
    folder on shared storage would show its config to colleagues but not its weights. Called on
    folders koin-hf has just written. Symbolic links are left alone.
    """
    mask = current_umask()
    root = Path(folder)
    if not root.is_dir() or root.is_symlink():
        return
    os.chmod(root, 0o777 & ~mask)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
