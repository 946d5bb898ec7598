"""Robust image decoding: every photo a user has becomes an upright RGB image, or a skip reason.

Real photo folders hold CMYK JPEGs, 16-bit PNGs, palette GIFs, RGBA screenshots, EXIF-rotated
phone pictures and the odd truncated download. Everything that decodes is normalised here, in
one place, so the dataset builder, the training transforms and `koin predict` agree on pixels.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
# Files that operating systems and photo tools leave next to pictures.
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})

# Pillow refuses images above ~89 MP by default as a decompression-bomb guard; phone photos are
# far below, so keep the guard but make it a skip reason rather than a crash.
Image.MAX_IMAGE_PIXELS = 200_000_000


class UnusableImage(Exception):
    """A file that cannot become a training image; the message is the skip reason."""


def skip_reason_for_name(path: Path) -> str | None:
    """Why a file is skipped from its name alone, or None when it may be an image."""
    name = path.name
    if name.lower() in SYSTEM_FILES:
        return "system file"
    if name.startswith("."):
        return "hidden file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {path.suffix or 'none'!r})"
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping or black transparency."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: convert("RGB") would clip everything above 255 to white.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels hold arbitrary colours; put them on white like an image viewer does.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def file_problem(path: Path) -> str | None:
    """Why an existing directory entry cannot be read as a file, or None when it can.

    Checked before opening so that a FIFO named like a photo cannot block the build, and so that
    broken links, folders and permission problems get a reason instead of an OSError.
    """
    try:
        info = path.stat()  # follows symbolic links
    except FileNotFoundError:
        return "unreadable (broken symbolic link)" if path.is_symlink() else "unreadable (missing)"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if stat.S_ISDIR(info.st_mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (device, pipe or socket)"
    if not os.access(path, os.R_OK):
        return "unreadable (permission denied)"
    return None


def _open_source(source: str | Path | bytes) -> io.BufferedIOBase:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    problem = file_problem(Path(source))
    if problem:
        raise UnusableImage(problem)
    try:
        return open(source, "rb")  # noqa: SIM115 - closed by the caller's `with`
    except OSError as err:
        raise UnusableImage(f"unreadable ({err.strerror or err})") from err


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    except Exception:  # a malformed EXIF block must not cost the photo
        return 1


def _upright(image: Image.Image) -> Image.Image:
    if _exif_orientation(image) == 1:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF: keep the pixels as stored rather than lose the image
        return image


def _decode_opened(stream: io.BufferedIOBase, max_shorter_side: int | None) -> Image.Image:
    """Decode an open stream; every decoder failure becomes an UnusableImage with a reason."""
    if not stream.read(1):
        raise UnusableImage("empty file (0 bytes)")
    stream.seek(0)
    try:
        image = Image.open(stream)
        if max_shorter_side and isinstance(image, JpegImageFile):  # JPEG and phone MPO files
            # draft keeps both sides >= the request, so the resize below still has detail.
            image.draft("RGB", (max_shorter_side, max_shorter_side))
        image.load()
        return _to_rgb(_upright(image))
    except UnusableImage:
        raise
    except Image.DecompressionBombError as err:
        raise UnusableImage(f"image too large ({err})") from err
    except UnidentifiedImageError as err:
        raise UnusableImage("not a readable image (unknown or corrupt format)") from err
    except MemoryError as err:
        raise UnusableImage("image too large to decode in memory") from err
    except Exception as err:
        # Malformed files surface as OSError, SyntaxError, ValueError, struct.error, EOFError,
        # IndexError... depending on the codec: any of them means "this file is unusable".
        raise UnusableImage(f"corrupt or truncated image ({type(err).__name__}: {err})") from err


def decode_rgb(
    source: str | Path | bytes, max_shorter_side: int | None = None, *, slack: float = 1.0
) -> Image.Image:
    """Decode a file or bytes into an upright RGB image, optionally downscaled.

    `max_shorter_side` caps the shorter side; JPEGs are then decoded at reduced size straight
    from the DCT (Pillow's draft mode), which is several times cheaper than a full decode.
    `slack` > 1 tolerates a shorter side up to `slack * max_shorter_side` after that decode and
    skips the resampling pass: for callers that crop and resize anyway (training augmentation),
    the pass costs as much as the decode and only throws detail away.
    Raises UnusableImage with a human-readable reason, never a codec-specific exception.
    """
    with _open_source(source) as stream:
        image = _decode_opened(stream, max_shorter_side)
    if max_shorter_side and min(image.size) > max_shorter_side * slack:
        image = downscale(image, max_shorter_side)
    return image


def image_bytes_for_dataset(
    source: str | Path, max_shorter_side: int | None = None, quality: int = 95
) -> bytes:
    """The bytes the prepared dataset stores for one photo: always an upright RGB JPEG.

    A JPEG that is already RGB, upright and small enough is stored as it is (after a full
    decode proves it intact): re-encoding would only lose quality. Everything else is decoded,
    normalised and re-encoded. Raises UnusableImage with the skip reason.
    """
    with _open_source(source) as stream:
        original = stream.read()
    if not original:
        raise UnusableImage("empty file (0 bytes)")
    image = _decode_opened(io.BytesIO(original), max_shorter_side)
    if _is_storable_as_is(original, max_shorter_side):
        return original
    if max_shorter_side:
        image = downscale(image, max_shorter_side)
    return encode_jpeg(image, quality)


def _is_storable_as_is(data: bytes, max_shorter_side: int | None) -> bool:
    """True for an RGB, upright JPEG whose shorter side needs no reduction."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return (
                image.format == "JPEG"
                and image.mode == "RGB"
                and _exif_orientation(image) == 1
                and (not max_shorter_side or min(image.size) <= max_shorter_side)
            )
    except Exception:
        return False


def downscale(image: Image.Image, max_shorter_side: int) -> Image.Image:
    """Shrink so the shorter side is at most `max_shorter_side`; never upscale."""
    width, height = image.size
    shorter = min(width, height)
    if shorter <= max_shorter_side:
        return image
    scale = max_shorter_side / shorter
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """JPEG bytes of an RGB image (what the prepared dataset stores)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()
