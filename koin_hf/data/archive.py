"""Safe extraction of a zipped KoIn download.

Zip members are untrusted paths: `../../etc/passwd` or an absolute path must never be written
outside the extraction folder (zip-slip), and links are not followed.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from koin_hf.errors import KoinError


def _member_target(root: Path, name: str) -> Path:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise KoinError(f"refusing archive member {name!r}: it would be written outside the target")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise KoinError(f"refusing archive member {name!r}: it would be written outside the target")
    return target


def extract_zip_safely(archive: Path, destination: Path) -> Path:
    """Extract `archive` into `destination`, refusing zip-slip members and symlinks.

    Every member is checked before anything is written, so a hostile archive leaves no
    partial extraction behind.
    """
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
        partial = destination.with_name(destination.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for member in members:
                _extract_member(zf, member, _member_target(partial, member.filename), archive)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(destination)
    return destination


def _extract_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, archive: Path):
    """Write one member; a damaged or unsupported member is a one-line error naming it."""
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise KoinError(f"{archive} is damaged: member {member.filename!r} ({err})") from err
    except (RuntimeError, NotImplementedError) as err:  # encrypted, or an exotic compression
        raise KoinError(f"cannot extract {member.filename!r} from {archive} ({err})") from err
    except OSError as err:
        raise KoinError(
            f"cannot write {target} while extracting {archive} ({err.strerror or err})"
        ) from err


def extract_zip_cached(archive: Path, cache_root: Path) -> Path:
    """Extract once per archive content into `cache_root/<sha256 prefix>`; reuse afterwards."""
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    destination = cache_root / digest.hexdigest()[:16]
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    return extract_zip_safely(archive, destination)
