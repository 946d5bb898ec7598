"""Process set-up every koin-hf entry point runs first: the allocator and how threads wait.

Two measured problems of CPU runs (benchmarks/bench_runtime.py, numbers in benchmarks/RESULTS.md):

1. glibc's malloc serves every block above its mmap threshold (at most 32 MiB, adapting
   upwards from 128 KiB) with a fresh `mmap`, and gives it back with `munmap` when freed. A
   convolution's activations are tens of MB, so every layer of every batch maps new pages,
   page-faults them in and unmaps them again: on this 2-core machine a bare forward of
   EfficientNet-Lite0 spent more time in the kernel than in user space (6.4 million minor faults
   per 256 images). Raising the mmap and trim thresholds keeps those blocks in the heap, where
   they are reused. `mallopt` does it for this process; GLIBC_TUNABLES carries the same setting
   into every process started from it (accelerate's workers, DataLoader workers started by
   spawn/forkserver, `koin` subprocesses). Forked workers inherit it with the heap.
2. OpenMP threads spin while they wait for each other. When another process holds a core, a
   spinning thread burns the time slice its descheduled sibling needs, so a training step
   slows far beyond the neighbour's fair share. OMP_WAIT_POLICY=PASSIVE makes them sleep. It
   is read when torch loads its OpenMP runtime, so entry points call `configure_process()`
   before they import torch (train.py, the `koin` command); a Python user who already imported
   torch gets the allocator setting only.

The price of keeping blocks is fragmentation: a phase that allocates other sizes than the one
before it (evaluation after training steps) cannot reuse all the freed holes, and the heap grows
(measured on Lite0: training peak 3.6 -> 4.2 GB, then evaluation 5.0 GB). `release_free_memory`
hands the free pages back between phases, which keeps evaluation inside training's peak.

Both are skipped when the user set the variable themselves, and KOIN_HF_RUNTIME=off turns all of
it off (to compare, or to use a preloaded allocator such as tcmalloc or jemalloc instead).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

logger = logging.getLogger(__name__)

SWITCH_VARIABLE = "KOIN_HF_RUNTIME"
# `logger.info(..., extra=STAGE)` marks a stage line (synthesise, prepare, data, model, train,
# score): the lines train.py's quiet default shows (koin_hf.training.console).
STAGE = {"koin_stage": True}
# 2 GiB - 1: mallopt takes a C int. Blocks up to this size are served from the heap and kept.
HEAP_BLOCK_LIMIT = 2**31 - 1
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_TUNABLES = (
    f"glibc.malloc.mmap_threshold={HEAP_BLOCK_LIMIT}:glibc.malloc.trim_threshold={HEAP_BLOCK_LIMIT}"
)

_configured = False


def runtime_enabled() -> bool:
    return os.environ.get(SWITCH_VARIABLE, "on").strip().lower() not in ("off", "0", "false", "no")


@functools.cache
def _glibc():
    """The C library when it is glibc (mallopt's parameters are glibc's), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # musl has no such function: AttributeError
        return libc
    except (OSError, AttributeError):
        return None


def keep_large_blocks_in_heap() -> bool:
    """Raise glibc's mmap and trim thresholds here and in child processes; True if applied."""
    libc = _glibc()
    if libc is None:
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.mmap_threshold" in tunables:
        return False  # the user chose their own threshold
    os.environ["GLIBC_TUNABLES"] = f"{tunables}:{_TUNABLES}" if tunables else _TUNABLES
    limit = ctypes.c_int(HEAP_BLOCK_LIMIT)
    applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, limit)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, limit)
    )
    if not applied:
        logger.debug("mallopt refused the heap thresholds; the allocator is unchanged")
    return applied


def passive_thread_waits() -> bool:
    """Let OpenMP threads sleep rather than spin while waiting; True if set by this call."""
    if "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if "torch" in sys.modules:
        logger.debug("torch is already imported: OMP_WAIT_POLICY applies to child processes only")
    return True


def configure_process() -> None:
    """Apply koin-hf's process set-up once; safe to call again, and from any entry point."""
    global _configured
    if _configured or not runtime_enabled():
        return
    _configured = True
    keep_large_blocks_in_heap()
    passive_thread_waits()


def release_free_memory() -> bool:
    """Return the heap's free pages to the kernel (glibc's malloc_trim); True if any were.

    Called between phases that allocate differently (each evaluation during training), so the
    next phase starts from the memory it needs rather than the last phase's holes. A no-op where
    the set-up is off or the C library is not glibc.
    """
    libc = _glibc()
    if libc is None or not runtime_enabled():
        return False
    return bool(libc.malloc_trim(0))
