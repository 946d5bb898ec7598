"""Keep a training process's resident set flat while it reads a memory-mapped dataset.

datasets memory-maps its Arrow files. Every page an epoch reads stays mapped into the process
afterwards, so the resident set (RSS, what `top`, Slurm's memory accounting and most job
schedulers look at) grows with the dataset until it holds all of it: ~2.5 GB for 100k KoIn
photos stored at 256 pixels. Those pages are clean copies of the file, so the kernel can drop
them, but it only does so under memory pressure; a scheduler that kills jobs by RSS acts first.

`MappedPageReleaser` hands the pages back after every batch with madvise(MADV_DONTNEED). The
mapping stays valid: the next read of a released page faults it back in from the page cache (a
minor fault), so nothing is re-read from disk while the file is cached. Why every batch: the
kernel maps a whole page-cache folio (often hundreds of KiB) around each row read, so a random
batch of 128 rows of 20 KB photos maps ~90 MiB; released per batch, the reading process holds
about one batch's worth. Measured over an epoch of 50k such rows in batches of 128 on this
project's CPU machine: ~2.5 ms per batch, against ~130 ms to decode the batch's photos. Files
smaller than `MIN_MAPPED_BYTES` in all are left alone: they cannot grow the resident set by more
than that, and releasing a small file's pages only makes every epoch fault them back in (-3% of
bench_data_path.py's throughput on its 13.5 MB dataset). Linux only; elsewhere it does nothing.

The price is re-faulting: a row whose pages were released is mapped again when it is read again.
`KOIN_HF_RELEASE_MAPPED_PAGES=0` turns the release off, for runs that would rather have the last
few percent of data-loading speed than a flat resident set.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

MADV_DONTNEED = 4  # <sys/mman.h>, the same on every Linux architecture
MIN_MAPPED_BYTES = 64 * 2**20  # below this, the resident set's growth is bounded anyway
SWITCH_VARIABLE = "KOIN_HF_RELEASE_MAPPED_PAGES"


def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get(SWITCH_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):  # pragma: no cover - a libc without madvise
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def _total_bytes(paths: Iterable[str]) -> int:
    return sum(os.path.getsize(path) for path in paths if os.path.isfile(path))


class MappedPageReleaser:
    """Releases the resident pages of this process's mappings of the given files.

    Works in whichever process calls it: the training process itself, or a forked or spawned
    DataLoader worker (each finds its own mappings in /proc/self/maps).
    """

    def __init__(self, paths: Iterable[str | os.PathLike]):
        self.paths = frozenset(os.path.realpath(path) for path in paths)
        self._madvise = _madvise() if _total_bytes(self.paths) >= MIN_MAPPED_BYTES else None

    @property
    def active(self) -> bool:
        return self._madvise is not None

    def mapped_ranges(self) -> list[tuple[int, int]]:
        """(start, length) of every mapping of one of the files in this process."""
        ranges = []
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as maps:
                for line in maps:
                    fields = line.split(maxsplit=5)
                    if len(fields) == 6 and fields[5].rstrip("\n") in self.paths:
                        start, end = (int(bound, 16) for bound in fields[0].split("-"))
                        ranges.append((start, end - start))
        except OSError:  # no procfs (a sandbox): nothing we can find, nothing to release
            return []
        return ranges

    def resident_bytes(self) -> int:
        """How much of the files' mappings is resident in this process now (from smaps)."""
        resident, inside = 0, False
        try:
            with open("/proc/self/smaps", encoding="utf-8", errors="surrogateescape") as smaps:
                for line in smaps:
                    fields = line.split(maxsplit=5)
                    if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a header
                        inside = len(fields) == 6 and fields[5].rstrip("\n") in self.paths
                    elif inside and fields[0] == "Rss:":
                        resident += int(fields[1]) * 1024
        except OSError:
            return 0
        return resident

    def release(self) -> int:
        """Release the pages now; returns how many bytes of mappings were advised."""
        if self._madvise is None:
            return 0
        released = 0
        for start, length in self.mapped_ranges():
            if self._madvise(start, length, MADV_DONTNEED) == 0:
                released += length
            else:  # never fatal: at worst the resident set grows as it would have anyway
                logger.debug("madvise failed on a mapping: errno %d", ctypes.get_errno())
        return released

    def __getstate__(self) -> dict[str, Any]:  # spawned workers: ctypes functions don't pickle
        return {"paths": self.paths}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"])


def dataset_files(dataset: Any) -> list[str]:
    """The files a datasets.Dataset memory-maps (none for in-memory or streamed datasets)."""
    return [entry["filename"] for entry in getattr(dataset, "cache_files", None) or []]


class _ReleasingAfterEachCall:
    """A batch function that releases the mapped pages after each call.

    A class rather than a closure so that a DataLoader can pickle it into spawned workers.
    """

    def __init__(self, function: Callable[[Any], Any], releaser: MappedPageReleaser) -> None:
        self.function = function
        self.releaser = releaser

    def __call__(self, batch: Any) -> Any:
        try:
            return self.function(batch)
        finally:
            self.releaser.release()


def releasing_pages(function: Callable[[Any], Any], dataset: Any) -> Callable[[Any], Any]:
    """`function`, releasing the dataset's mapped pages after each batch it is called on.

    `function` is a batch transform or a DataLoader collate over `dataset`'s rows; it comes back
    unchanged when there is nothing to release.
    """
    releaser = MappedPageReleaser(dataset_files(dataset))
    if not releaser.active:
        return function
    return _ReleasingAfterEachCall(function, releaser)
