"""koin_hf.folder_lock: one run writes an output folder at a time; staging follows the umask."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from koin_hf.errors import KoinError
from koin_hf.folder_lock import claim_folder, lock_path, staging_folder_beside


def _claim(path, what: str = "koin prepare") -> None:
    with claim_folder(path, what):
        pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lock_sits_beside_the_folder_and_is_removed_after(tmp_path):
    out = tmp_path / "koin"
    with claim_folder(out, "koin prepare") as lock:
        assert lock == tmp_path / ".koin.lock"
        record = json.loads(lock.read_text(encoding="utf-8"))
        assert record["pid"] == os.getpid()
        assert record["host"] == socket.gethostname()
        assert record["what"] == "koin prepare"
        assert not out.exists()  # the folder itself is left alone
    assert not lock.exists()


def test_a_second_claim_is_refused_at_once_naming_the_holder_and_the_lock(tmp_path):
    out = tmp_path / "koin"
    with claim_folder(out, "koin prepare"), pytest.raises(KoinError) as caught:
        _claim(out, "train.py")
    message = str(caught.value)
    assert message.startswith(f"{out} is being written by koin prepare (pid {os.getpid()} on ")
    assert message.endswith(f"delete the lock file {tmp_path / '.koin.lock'}")
    assert "\n" not in message
    assert not lock_path(out).exists()  # released by the first claim, not by the refused one


def test_a_missing_parent_is_created_and_an_unwritable_one_is_one_sentence(tmp_path):
    with claim_folder(tmp_path / "runs" / "vit", "train.py") as lock:
        assert lock == tmp_path / "runs" / ".vit.lock"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(KoinError, match=f"cannot create the folder {blocker}"):
        _claim(blocker / "out")


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError), claim_folder(tmp_path / "koin"):
        raise RuntimeError("the run failed")
    assert not lock_path(tmp_path / "koin").exists()
    with claim_folder(tmp_path / "koin"):  # and the folder can be claimed again
        pass


def test_a_stale_lock_of_a_dead_process_on_this_host_is_reclaimed(tmp_path):
    lock = lock_path(tmp_path / "koin")
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "what": "koin prepare"}
    lock.write_text(json.dumps(stale), encoding="utf-8")
    with claim_folder(tmp_path / "koin"):
        assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == os.getpid()
    assert not lock.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left aside


def test_a_lock_from_another_host_is_never_taken(tmp_path):
    lock = lock_path(tmp_path / "koin")
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere"}), encoding="utf-8")
    with pytest.raises(KoinError, match=r"on elsewhere.*delete the lock file"):
        _claim(tmp_path / "koin")
    assert lock.exists()


def test_an_unreadable_lock_is_refused_not_taken(tmp_path):
    lock = lock_path(tmp_path / "koin")
    lock.write_text("", encoding="utf-8")  # another run between creating and writing it
    with pytest.raises(KoinError, match="another run"):
        _claim(tmp_path / "koin")


def test_a_lock_held_by_another_live_process(tmp_path):
    out = tmp_path / "koin"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from koin_hf.folder_lock import claim_folder\n"
            f"with claim_folder({str(out)!r}, 'train.py'):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(KoinError, match=rf"being written by train.py \(pid {holder.pid} on "):
            _claim(out)
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    with claim_folder(out):  # released by its holder
        pass


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_staging_folders_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        staging = staging_folder_beside(tmp_path / "koin")
    finally:
        os.umask(previous)
    assert staging.parent == tmp_path and staging.name.startswith(".koin.partial-")
    assert stat.S_IMODE(staging.stat().st_mode) == mode
