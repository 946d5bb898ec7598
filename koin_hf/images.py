"""Robust image decoding: every photo a user has becomes an upright RGB image, or a skip reason.

Real photo folders hold CMYK JPEGs, 16-bit PNGs, palette GIFs, RGBA screenshots, EXIF-rotated
phone pictures and the odd truncated download. Everything that decodes is normalised here, in
one place, so the dataset builder, the training transforms and `koin predict` agree on pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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


def decode_rgb(source: str | Path | bytes, max_shorter_side: int | None = None) -> Image.Image:
    """Decode a file or bytes into an upright RGB image, optionally downscaled.

    `max_shorter_side` caps the shorter side; JPEGs are then decoded at reduced size straight
    from the DCT (Pillow's draft mode), which is several times cheaper than a full decode.
    Raises UnusableImage with a human-readable reason.
    """
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as err:
        raise UnusableImage(f"unreadable ({err.strerror or err})") from err
    with stream:
        data_start = stream.read(1)
        if not data_start:
            raise UnusableImage("empty file (0 bytes)")
        stream.seek(0)
        try:
            image = Image.open(stream)
            if max_shorter_side and image.format == "JPEG":
                # draft keeps both sides >= the request, so the resize below still has detail.
                image.draft("RGB", (max_shorter_side, max_shorter_side))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
        except Image.DecompressionBombError as err:
            raise UnusableImage(f"image too large ({err})") from err
        except (OSError, SyntaxError, ValueError) as err:
            raise UnusableImage(f"corrupt or truncated image ({err})") from err
    if max_shorter_side:
        image = downscale(image, max_shorter_side)
    return image


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
