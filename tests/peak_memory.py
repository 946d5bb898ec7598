"""Run a command in a child process and measure its peak resident memory, as the kernel counts it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

# Linux keeps a process's peak RSS across exec, and a child starts out with its parent's pages:
# a command spawned straight from a test process that holds torch (~1 GB) would report at least
# that. A small launcher process spawns the command instead, so the number is the command's own
# (plus the launcher's ~15 MB at the moment it forks).
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in MB) of `argv`, from the kernel's rusage of that process.

    os.wait4 reports the child's own ru_maxrss (KB on Linux): the real process, measured whole,
    not an estimate from inside it.
    """
    with tempfile.TemporaryFile() as err:
        launcher = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *argv],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            text=True,
            check=True,
        )
        err.seek(0)
        code, peak_kb = (int(field) for field in launcher.stdout.split())
        return code, err.read().decode("utf-8", "replace"), peak_kb / 1024
