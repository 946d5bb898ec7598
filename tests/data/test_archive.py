"""koin_hf.data.archive: zipped KoIn downloads extract safely, or fail with one clear sentence."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from koin_hf.data.archive import extract_zip_cached, extract_zip_safely
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
