"""One writer per folder: a lock file created with O_EXCL while a koin-hf process writes there.

Two processes writing into one folder (two training runs into one output_dir) would interleave
their files without a word: one run could finish with the other's weights under its own run
record. The writer creates `LOCK_NAME` in the folder with O_CREAT | O_EXCL (atomic on local file
systems and NFS v3+), holding its pid, host name and what it is; a second claimer gets a
KoinError naming the lock. A lock left by a process that died on this host (its pid is gone) is
reclaimed; a lock from another host is never guessed stale: the message says how to remove it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from koin_hf.errors import KoinError

# A leading underscore: Trainer.push_to_hub skips "_*", so a lock never reaches the Hub.
LOCK_NAME = "_koin.lock"
EMPTY_LOCK_GRACE_S = 10


@contextmanager
def claim_folder(path: str | os.PathLike, what: str = "a koin-hf process") -> Iterator[Path]:
    """Hold `path` (created if missing) for this process; release it when the block ends.

    `what` names the claimer in the refusal another claimer gets ("a train.py run"). A folder
    this claim created and left empty (a run that failed before writing) is removed again.
    """
    folder = Path(path)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KoinError(f"cannot create the folder {folder}: {err.strerror or err}") from None
    if not folder.is_dir():
        raise KoinError(f"{folder} is a file, not a folder")
    lock = folder / LOCK_NAME
    token = _acquire(lock, what)
    try:
        yield folder
    finally:
        _release(lock, token)
        if created:
            with suppress(OSError):
                folder.rmdir()  # only succeeds when nothing was written


def _acquire(lock: Path, what: str) -> str:
    token = uuid.uuid4().hex
    content = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "token": token,
        }
    )
    for _attempt in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder_text = _read(lock)
            if holder_text == "" and not lock.exists():
                continue  # released meanwhile
            if holder_text is not None and _is_stale(lock, holder_text):
                _reclaim(lock, holder_text)
                continue
            raise KoinError(_refusal(lock, holder_text)) from None
        except OSError as err:
            raise KoinError(f"cannot create the lock {lock}: {err.strerror or err}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(content)  # one small write: a reader sees all of it or (rarely) nothing
        return token
    raise KoinError(_refusal(lock, _read(lock)))


def _read(lock: Path) -> str | None:
    try:
        return lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""  # released between our create and our read: retry
    except (OSError, UnicodeDecodeError):
        return None


def _holder(text: str | None) -> dict:
    try:
        holder = json.loads(text or "")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(lock: Path, text: str) -> bool:
    """True when the holder's process on this host is gone.

    An empty lock is a claimer killed between creating and writing it, unless it is seconds old
    (a claimer about to write).
    """
    if text == "":
        try:
            return time.time() - lock.stat().st_mtime > EMPTY_LOCK_GRACE_S
        except FileNotFoundError:
            return True
    holder = _holder(text)
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.ESRCH  # EPERM: alive, another user's
    return False


def _reclaim(lock: Path, stale_text: str) -> None:
    """Remove a stale lock, unless someone replaced it with a live one meanwhile."""
    aside = lock.with_name(f"{lock.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another claimer reclaimed it first
    if stale_text and _read(aside) != stale_text:
        with suppress(OSError):
            os.link(aside, lock)  # a live lock moved by mistake: put it back
    aside.unlink(missing_ok=True)


def _release(lock: Path, token: str) -> None:
    if _holder(_read(lock)).get("token") == token:
        lock.unlink(missing_ok=True)


def _refusal(lock: Path, text: str | None) -> str:
    holder = _holder(text)
    if not holder:
        return (
            f"{lock.parent} is locked by {lock} (unreadable); if no koin-hf process is writing "
            f"there, delete {lock}"
        )
    who = holder.get("what") or "another koin-hf process"
    return (
        f"{lock.parent} is in use by {who} (pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('since')}); wait for it to finish, or if that process is gone, "
        f"delete {lock}"
    )
