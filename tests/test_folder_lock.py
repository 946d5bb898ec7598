"""claim_folder: one writer per folder; a dead writer's lock is reclaimed, a live one refuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from koin_hf.errors import KoinError
from koin_hf.folder_lock import LOCK_NAME, claim_folder


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped), so no process has it now."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(folder, pid: int, host: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host, "what": "a train.py run", "since": "x", "token": "t"}
    (folder / LOCK_NAME).write_text(json.dumps(holder), encoding="utf-8")


def test_a_second_claimer_is_refused_naming_the_lock_and_the_holder(tmp_path):
    with claim_folder(tmp_path / "out", what="a train.py run"):
        lock = json.loads((tmp_path / "out" / LOCK_NAME).read_text(encoding="utf-8"))
        assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
        with pytest.raises(KoinError) as error, claim_folder(tmp_path / "out"):
            pass
    message = str(error.value)
    assert f"{tmp_path / 'out'} is in use by a train.py run (pid {os.getpid()} on " in message
    assert f"delete {tmp_path / 'out' / LOCK_NAME}" in message and "\n" not in message
    assert not (tmp_path / "out").exists(), "the claim made the folder and left it empty"


def test_the_lock_is_released_and_written_folders_stay(tmp_path):
    with claim_folder(tmp_path / "out") as folder:
        (folder / "model.safetensors").write_bytes(b"x")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.safetensors"]
    with claim_folder(tmp_path / "out"):  # free again
        pass


def test_a_dead_processes_lock_on_this_host_is_reclaimed(tmp_path):
    _write_lock(tmp_path, _dead_pid(), socket.gethostname())
    with claim_folder(tmp_path):
        holder = json.loads((tmp_path / LOCK_NAME).read_text(encoding="utf-8"))
        assert holder["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()
    assert list(tmp_path.iterdir()) == []  # no reclaimed leftovers


def test_a_live_process_or_another_host_keeps_its_lock(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path / "a", sleeper.pid, socket.gethostname())
        with pytest.raises(KoinError, match=f"pid {sleeper.pid} on "), claim_folder(tmp_path / "a"):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    _write_lock(tmp_path / "b", _dead_pid(), "another-host.example")  # cannot be checked from here
    with pytest.raises(KoinError, match="on another-host.example"), claim_folder(tmp_path / "b"):
        pass
    assert (tmp_path / "b" / LOCK_NAME).exists()


def test_an_empty_lock_is_stale_only_once_it_is_old(tmp_path):
    (tmp_path / LOCK_NAME).write_text("", encoding="utf-8")
    with pytest.raises(KoinError, match="unreadable"), claim_folder(tmp_path):
        pass  # seconds old: a claimer may be about to write its pid
    old = time.time() - 60
    os.utime(tmp_path / LOCK_NAME, (old, old))
    with claim_folder(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text(encoding="utf-8"))["pid"] == os.getpid()


def test_a_file_is_no_folder_to_claim(tmp_path):
    (tmp_path / "f").write_text("x", encoding="utf-8")
    with pytest.raises(KoinError, match="cannot create the folder"), claim_folder(tmp_path / "f"):
        pass
