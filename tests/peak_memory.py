"""Run a command in a child process and measure its peak resident memory, as the kernel counts it."""

from __future__ import annotations

import os
import subprocess
import tempfile


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in MB) of `argv`, from the kernel's rusage of that process.

    os.wait4 reports the child's own ru_maxrss (KB on Linux): the real process, measured whole,
    not an estimate from inside it.
    """
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return child.returncode, err.read().decode("utf-8", "replace"), usage.ru_maxrss / 1024
