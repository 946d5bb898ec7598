"""koin_hf.data.archive: zipped KoIn downloads extract safely, or fail with one clear sentence."""

from __future__ import annotations

import os
import stat
import struct
import sys
import zipfile
from pathlib import Path

import pytest
from peak_memory import run_measured

from koin_hf.data.archive import ZipLimits, extract_zip_cached, extract_zip_safely
from koin_hf.errors import KoinError


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_extracts_members_and_folders(tmp_path):
    archive = _zip(tmp_path / "koin.zip", {"Dataset/normal_cases/train/0000/a.jpg": b"jpeg"})
    out = extract_zip_safely(archive, tmp_path / "out")
    assert (out / "Dataset/normal_cases/train/0000/a.jpg").read_bytes() == b"jpeg"


@pytest.mark.parametrize(
    "hostile",
    [
        "../evil.txt",
        "Dataset/../../evil.txt",
        "/tmp/evil-absolute.txt",
        "..\\evil.txt",  # Windows separators are path separators too
        "C:/evil.txt",
    ],
)
def test_zip_slip_members_are_refused_before_anything_is_written(tmp_path, hostile):
    archive = _zip(tmp_path / "hostile.zip", {"Dataset/ok.jpg": b"ok", hostile: b"pwned"})
    target = tmp_path / "sandbox" / "out"
    target.parent.mkdir()
    with pytest.raises(KoinError, match="refusing archive member"):
        extract_zip_safely(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil-absolute.txt").exists()
    assert _tree(tmp_path / "sandbox") == set()  # not even the harmless member


def test_symlink_members_are_refused(tmp_path):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("Dataset/normal_cases/link.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(KoinError, match="symbolic link"):
        extract_zip_safely(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip_is_a_clear_error(tmp_path):
    fake = tmp_path / "koin.zip"
    fake.write_text("this is not a zip")
    with pytest.raises(KoinError, match=r"koin\.zip is not a readable zip archive"):
        extract_zip_safely(fake, tmp_path / "out")


def test_damaged_member_names_the_member_and_leaves_nothing(tmp_path):
    payload = bytes(range(256)) * 64
    archive = _zip(tmp_path / "koin.zip", {"Dataset/a.jpg": payload})
    data = bytearray(archive.read_bytes())
    start = data.find(b"Dataset/a.jpg") + len("Dataset/a.jpg")  # compressed data follows
    for offset in range(start + 5, start + 40):
        data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(KoinError, match=r"Dataset/a\.jpg"):
        extract_zip_safely(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_cached_extraction_is_reused_per_content(tmp_path):
    archive = _zip(tmp_path / "koin.zip", {"normal_cases/train/0000/a.jpg": b"1"})
    first = extract_zip_cached(archive, tmp_path / "cache")
    marker = first / "marker"
    marker.write_text("still here")
    assert extract_zip_cached(archive, tmp_path / "cache") == first
    assert marker.exists()  # not extracted again
    _zip(archive, {"normal_cases/train/0000/a.jpg": b"2"})  # new content: new folder
    second = extract_zip_cached(archive, tmp_path / "cache")
    assert second != first
    assert (second / "normal_cases/train/0000/a.jpg").read_bytes() == b"2"


# ---------------------------------------------------------------------------------------------
# Zip bombs: members are streamed and bounded


def _zip_of_zeros(path: Path, name: str, size: int) -> Path:
    """A zip whose one member is `size` zero bytes: deflate squeezes it ~1000:1."""
    chunk = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open(name, "w", force_zip64=True) as member,
    ):
        for _ in range(size >> 20):
            member.write(chunk)
    return path


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    archive = _zip_of_zeros(tmp_path / "bomb.zip", "normal_cases/train/0000/a.jpg", 200 << 20)
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(KoinError) as caught:
        extract_zip_safely(archive, tmp_path / "out")
    assert str(caught.value) == (
        f"refusing {archive}: member 'normal_cases/train/0000/a.jpg' expands 1029x "
        "(199.1 KB to 200.0 MB), over the 100x limit: a zip bomb, not photos"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_member_and_total_limits_are_checked_on_declared_sizes(tmp_path):
    payload = os.urandom(300_000)  # incompressible: no ratio alarm
    archive = _zip(tmp_path / "koin.zip", {"a.jpg": payload, "b.jpg": payload})
    with pytest.raises(
        KoinError,
        match=r"member 'a\.jpg' expands to 293\.0 KB, over the 195\.3 KB limit for one file",
    ):
        extract_zip_safely(archive, tmp_path / "out", ZipLimits(max_member_bytes=200_000))
    with pytest.raises(
        KoinError, match=r"it expands to 585\.9 KB, over the 488\.3 KB limit; extract it yourself"
    ):
        extract_zip_safely(archive, tmp_path / "out", ZipLimits(max_total_bytes=500_000))
    assert not (tmp_path / "out").exists()
    out = extract_zip_safely(archive, tmp_path / "out", ZipLimits(max_total_bytes=600_000))
    assert (out / "b.jpg").read_bytes() == payload


def _lie_about_size(archive: Path, name: str, declared: int) -> None:
    """Rewrite the uncompressed size in the local header and the central directory."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    local = info.header_offset
    struct.pack_into("<I", data, local + 22, declared)  # local file header: uncompressed size
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)  # central directory entry
    archive.write_bytes(bytes(data))


def test_a_member_that_lies_about_its_size_never_expands_beyond_the_lie(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jpg", bytes(50 << 20))  # 50 MB of zeros in ~50 KB
    _lie_about_size(archive, "a.jpg", 1000)  # "1000 bytes": no ratio alarm
    with pytest.raises(
        KoinError,
        match=r"koin\.zip is damaged: member 'a\.jpg'|liar\.zip is damaged: member 'a\.jpg'",
    ):
        extract_zip_safely(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_koin_prepare_on_a_zip_bomb_is_one_line_and_flat_memory(tmp_path):
    archive = _zip_of_zeros(tmp_path / "KoIn.zip", "normal_cases/train/0000/a.jpg", 256 << 20)
    code, err, peak_mb = run_measured(
        [sys.executable, "-m", "koin_hf.cli", "prepare", str(archive), str(tmp_path / "out")]
    )
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "expands 1029x" in err and "a zip bomb, not photos" in err
    assert peak_mb < 500, peak_mb


def test_extracted_files_follow_the_umask(tmp_path):
    archive = _zip(tmp_path / "koin.zip", {"normal_cases/train/0000/a.jpg": b"jpeg"})
    previous = os.umask(0o022)
    try:
        out = extract_zip_safely(archive, tmp_path / "out")
    finally:
        os.umask(previous)
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
