"""Small raw KoIn folders and tricky image files for tests, written the way users have them.

Clean trees hold tiny noisy pictures with a class-dependent colour; what matters there is the
layout, the file kinds and the counts. The tricky files (EXIF-rotated, CMYK, 16-bit, ...) carry
known pixel content so tests can check what a decoder made of them, not just that it ran.
"""

from __future__ import annotations

import csv
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_IDS = ("0000", "0001", "0002")
# Quotes and a comma inside a name exercise CSV quoting; Hangul exercises UTF-8.
CLASS_NAMES = ("Kim Minji", "이지은 (IU)", 'Park "Jimin", Jr.')

DEFAULT_SPLITS = {
    "normal_cases/train": 4,
    "normal_cases/test": 2,
    "hard_cases/test": 2,
    "Group_cases/test": 1,
}

# Four quadrant colours of an asymmetric test picture: top-left, top-right, bottom-left,
# bottom-right. Any rotation or mirror moves them, so reading them back proves orientation.
QUADRANT_COLOURS = ((220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 40))


def write_image(path: Path, class_index: int, *, size=(48, 40), fmt="JPEG", mode="RGB") -> Path:
    """A small noisy picture; deterministic per file name (no hash randomisation)."""
    rng = np.random.default_rng(zlib.crc32(f"{path.name}/{class_index}".encode()))
    array = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    array[..., class_index % 3] = 200
    image = Image.fromarray(array, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def write_classes_csv(base: Path, ids=CLASS_IDS, names=CLASS_NAMES, encoding="utf-8") -> Path:
    path = base / "classes.csv"
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name"])
        writer.writerows(zip(ids, names, strict=True))
    return path


def make_raw_koin(
    root: Path,
    *,
    per_split: dict[str, int] | None = None,
    names: bool = True,
    wrapper: str | None = None,
) -> Path:
    """Write a clean raw KoIn tree; returns the folder that holds normal_cases."""
    per_split = DEFAULT_SPLITS if per_split is None else per_split
    base = root / wrapper if wrapper else root
    for split, count in per_split.items():
        for class_index, class_id in enumerate(CLASS_IDS):
            for i in range(count):
                write_image(base / split / class_id / f"img_{i}.jpg", class_index)
    if names:
        write_classes_csv(base)
    return base


def image_files(base: Path) -> set[str]:
    """Relative paths of every file under `base` (what a clean tree should turn into rows)."""
    return {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()} - {
        "classes.csv"
    }


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def quadrant_array(width: int = 64, height: int = 48) -> np.ndarray:
    """An upright H x W x 3 picture made of four flat coloured quadrants."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    half_h, half_w = height // 2, width // 2
    array[:half_h, :half_w] = QUADRANT_COLOURS[0]
    array[:half_h, half_w:] = QUADRANT_COLOURS[1]
    array[half_h:, :half_w] = QUADRANT_COLOURS[2]
    array[half_h:, half_w:] = QUADRANT_COLOURS[3]
    return array


def quadrant_colours_of(image: Image.Image) -> list[tuple[int, int, int]]:
    """The colour at the centre of each quadrant, in QUADRANT_COLOURS order."""
    array = np.asarray(image.convert("RGB"))
    height, width = array.shape[:2]
    points = [(height // 4, width // 4), (height // 4, 3 * width // 4)]
    points += [(3 * height // 4, width // 4), (3 * height // 4, 3 * width // 4)]
    return [tuple(int(v) for v in array[y, x]) for y, x in points]


def close(colour, expected, tolerance: int = 24) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(colour, expected, strict=True))


# How a camera stores an upright scene for each EXIF orientation, written from the EXIF spec
# (not from Pillow): e.g. 6 means "rotate 90 degrees clockwise to display", so the stored
# pixels are the scene turned 90 degrees counter-clockwise (np.rot90 turns counter-clockwise).
STORED_FOR_ORIENTATION = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: np.rot90(a, 2),
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: np.transpose(a, (1, 0, 2)),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, -1),
}


def exif_rotated_jpeg(orientation: int, width: int = 64, height: int = 48) -> bytes:
    """JPEG bytes of the quadrant picture as a camera stores it with this EXIF orientation."""
    stored = np.ascontiguousarray(
        STORED_FOR_ORIENTATION[orientation](quadrant_array(width, height))
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(Image.fromarray(stored, "RGB"), quality=95, exif=exif.tobytes())


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A PNG built by hand, so tests can write what Pillow cannot (16-bit RGB, huge headers)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw_rows))
        + chunk(b"IEND", b"")
    )


def png16_rgb(array16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG of an H x W x 3 uint16 array."""
    height, width = array16.shape[:2]
    rows = b"".join(b"\x00" + array16[y].astype(">u2").tobytes() for y in range(height))
    return png_bytes(width, height, 16, 2, rows)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A complete, valid 8-bit greyscale PNG of `width` x `height` black pixels: zlib squeezes
    the zero rows ~1000:1, so 400 megapixels fit in ~400 KB (a decompression bomb)."""
    row = bytes(width + 1)  # filter byte 0 + one zero byte per pixel
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is edited to claim `width` x `height`."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (16, 16), (90, 90, 90))))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "baseline JPEG expected"
    # SOF0: marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
