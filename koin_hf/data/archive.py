"""Safe, bounded extraction of a zipped KoIn download.

Zip members are untrusted paths: `../../etc/passwd` or an absolute path must never be written
outside the extraction folder (zip-slip), and links are not followed. Their sizes are untrusted
too: a few megabytes of zip can expand to terabytes (a zip bomb). Members are streamed to disk a
chunk at a time (never held whole in memory), and `ZipLimits` bounds what one member, and the
whole archive, may expand to, checked on the sizes the archive declares before anything is
written and again on the bytes actually written.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from koin_hf.errors import KoinError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may expand to.

    max_total_bytes: the whole archive. KoIn is a few gigabytes of photos; 64 GiB leaves room
    for much larger photo collections while stopping a bomb before it fills the disk.
    max_member_bytes: one file. No photo or CSV comes near 1 GiB.
    max_ratio: uncompressed / compressed size of one member. Photos barely compress (JPEG ~1x,
    PNG 1-3x), text 5-10x; bombs are 1000x and more. Checked for members above
    `ratio_floor_bytes` only: a small all-white image may legitimately compress 100x.
    """

    max_total_bytes: int = 64 * 2**30
    max_member_bytes: int = 2**30
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 2**20


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _check_declared_sizes(archive: Path, members: list[zipfile.ZipInfo], limits: ZipLimits) -> int:
    """Refuse, from the central directory alone, an archive that would expand too far."""
    total = 0
    for member in members:
        size = member.file_size
        if size > limits.max_member_bytes:
            raise KoinError(
                f"refusing {archive}: member {member.filename!r} expands to {_size(size)}, over "
                f"the {_size(limits.max_member_bytes)} limit for one file"
            )
        ratio = size / max(member.compress_size, 1)
        if size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise KoinError(
                f"refusing {archive}: member {member.filename!r} expands {ratio:.0f}x "
                f"({_size(member.compress_size)} to {_size(size)}), over the "
                f"{limits.max_ratio:g}x limit: a zip bomb, not photos"
            )
        total += size
    if total > limits.max_total_bytes:
        raise KoinError(
            f"refusing {archive}: it expands to {_size(total)}, over the "
            f"{_size(limits.max_total_bytes)} limit; extract it yourself and pass the folder"
        )
    return total


def _member_target(root: Path, name: str) -> Path:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise KoinError(f"refusing archive member {name!r}: it would be written outside the target")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise KoinError(f"refusing archive member {name!r}: it would be written outside the target")
    return target


def extract_zip_safely(archive: Path, destination: Path, limits: ZipLimits | None = None) -> Path:
    """Extract `archive` into `destination`, refusing zip-slip members, symlinks and bombs.

    Every member's path and declared size is checked before anything is written, and the
    bytes written are counted against `limits` (default `ZipLimits()`), so a hostile archive
    fails with one sentence and leaves no partial extraction behind.
    """
    limits = limits or ZipLimits()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise KoinError(f"{archive} is not a readable zip archive ({err})") from err
    with zf:
        members = zf.infolist()
        for member in members:
            _member_target(destination, member.filename)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise KoinError(
                    f"refusing archive member {member.filename!r}: it is a symbolic link"
                )
        total = _check_declared_sizes(archive, members, limits)
        partial = destination.with_name(destination.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            free = shutil.disk_usage(partial).free
            if total > free:
                raise KoinError(
                    f"cannot extract {archive}: it expands to {_size(total)} and only "
                    f"{_size(free)} is free in {partial.parent}"
                )
            written = 0
            for member in members:
                written += _extract_member(
                    zf, member, _member_target(partial, member.filename), archive, limits, written
                )
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(destination)
    return destination


def _copy_bounded(
    src, dst, member: zipfile.ZipInfo, archive: Path, limits: ZipLimits, written_before: int
) -> int:
    """Stream one member a chunk at a time, counting bytes against the limits; returns them.

    zipfile already stops at the size the archive declares; counting here does not rely on it.
    """
    written = 0
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        if written > min(limits.max_member_bytes, max(member.file_size, 0)):
            raise KoinError(
                f"refusing {archive}: member {member.filename!r} expands beyond the size "
                "the archive declares for it (a zip bomb, or a damaged archive)"
            )
        if written_before + written > limits.max_total_bytes:
            raise KoinError(
                f"refusing {archive}: it expands beyond the "
                f"{_size(limits.max_total_bytes)} limit; extract it yourself and pass the folder"
            )
        dst.write(chunk)
    return written


def _extract_member(
    zf: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    target: Path,
    archive: Path,
    limits: ZipLimits,
    written_before: int,
) -> int:
    """Write one member; a damaged or unsupported member is a one-line error naming it.

    Returns the bytes written.
    """
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(member) as src, open(target, "wb") as dst:
            return _copy_bounded(src, dst, member, archive, limits, written_before)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise KoinError(f"{archive} is damaged: member {member.filename!r} ({err})") from err
    except (RuntimeError, NotImplementedError) as err:  # encrypted, or an exotic compression
        raise KoinError(f"cannot extract {member.filename!r} from {archive} ({err})") from err
    except OSError as err:
        raise KoinError(
            f"cannot write {target} while extracting {archive} ({err.strerror or err})"
        ) from err


def extract_zip_cached(archive: Path, cache_root: Path, limits: ZipLimits | None = None) -> Path:
    """Extract once per archive content into `cache_root/<sha256 prefix>`; reuse afterwards."""
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    destination = cache_root / digest.hexdigest()[:16]
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    return extract_zip_safely(archive, destination, limits)
