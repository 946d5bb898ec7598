"""Robust image decoding: every photo a user has becomes an upright RGB image, or a skip reason.

Real photo folders hold CMYK JPEGs, 16-bit PNGs, palette GIFs, RGBA screenshots, EXIF-rotated
phone pictures and the odd truncated download. Everything that decodes is normalised here, in
one place (`decode_rgb`), so `koin prepare`, the training transforms, `koin evaluate` and
`koin predict` give a file the same pixels.

Every decode first reads the header and refuses an image whose pixel count is over the budget
(`pixel_budget`): a 48 KB PNG can declare 20000x20000 pixels, and decoding it would cost
gigabytes. JPEGs are decoded at reduced size (Pillow's draft mode) when a caller needs fewer
pixels, and the budget counts the pixels actually decoded.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from koin_hf.errors import KoinError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
# Files that operating systems and photo tools leave next to pictures.
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})

# The pixel budget. The largest photos phones take in their full-resolution modes are 48 MP
# (iPhone, 8064x6048) and 50 MP (Samsung, Xiaomi, Pixel: 8160x6120); 64 MP is above both with
# room. At 64 MP one decode peaked (whole process, measured) at 280 MB for a JPEG (40 MB when
# reduced for a 256-pixel result), 600 MB for a 16-bit PNG and 850 MB for an RGBA PNG.
# 108 and 200 MP modes, scans and panoramas need the budget raised on purpose.
DEFAULT_MAX_MEGAPIXELS = 64.0
MAX_MEGAPIXELS_ENV = "KOIN_MAX_MEGAPIXELS"
MAX_MEGAPIXELS_HELP = (
    "refuse images whose header declares more than this many megapixels, before decoding them "
    f"(default ${MAX_MEGAPIXELS_ENV}, else {DEFAULT_MAX_MEGAPIXELS:g}: above the 48-50 MP of "
    "phones' full-resolution photos)"
)


class UnusableImage(Exception):
    """A file that cannot become a training image; the message is the skip reason."""


class ImageTooLarge(UnusableImage):
    """An image over the pixel budget, refused from its header before any pixel is decoded."""


def pixel_budget(max_megapixels: float | None = None) -> float:
    """The budget in megapixels: the argument, else $KOIN_MAX_MEGAPIXELS, else 64.

    A value that is not a positive number is a KoinError naming where it came from.
    """
    if max_megapixels is None:
        text = os.environ.get(MAX_MEGAPIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_MEGAPIXELS
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise KoinError(
                f"${MAX_MEGAPIXELS_ENV} must be a positive number of megapixels, not {text!r}"
            )
        return value
    if isinstance(max_megapixels, bool) or not (
        isinstance(max_megapixels, (int, float))
        and math.isfinite(max_megapixels)
        and max_megapixels > 0
    ):
        raise KoinError(
            f"--max_megapixels must be a positive number of megapixels, not {max_megapixels!r}"
        )
    return float(max_megapixels)


def _too_large(declared: str, megapixels: float, budget: float) -> ImageTooLarge:
    return ImageTooLarge(
        f"image too large: {declared} ({megapixels:.1f} megapixels), over the budget of "
        f"{budget:g} megapixels (raise it with --max_megapixels or ${MAX_MEGAPIXELS_ENV})"
    )


def _check_budget(image: Image.Image, declared: tuple[int, int], budget: float) -> None:
    """Refuse an image whose decode would allocate more than `budget` megapixels."""
    width, height = image.size  # after draft(): the pixels a decode will really allocate
    if width * height > budget * 1_000_000:
        megapixels = declared[0] * declared[1] / 1_000_000
        raise _too_large(f"{declared[0]}x{declared[1]} pixels", megapixels, budget)


def _lift_pillow_limit(budget: float) -> None:
    """Let a raised budget decide instead of Pillow's own decompression-bomb guard.

    Pillow warns above MAX_IMAGE_PIXELS (89 MP) and refuses above twice that, while opening,
    before anyone can look at the size. Below the limit the budget decides (the warning is
    silenced); above it Pillow's refusal is reported in the budget's words. A user who raises
    the budget above the limit means it, so the limit is raised for the process, never lowered.
    """
    pixels = int(budget * 1_000_000)
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = pixels


def _bomb_reason(err: Exception, budget: float) -> ImageTooLarge:
    """Pillow's refusal, in the words of the budget (its message holds the pixel count)."""
    match = re.search(r"\((\d+) pixels\)", str(err))
    if match is None:
        return ImageTooLarge(f"image too large ({err})")
    pixels = int(match.group(1))
    return _too_large(f"{pixels:,} pixels", pixels / 1_000_000, budget)


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
        # 16-bit greyscale: convert("RGB") would clip everything above 255 to white. Integer
        # arithmetic (x // 257 == floor(x * 255 / 65535)) keeps the peak near the image's size.
        array = np.array(image)
        if image.mode.startswith("I;16") or array.max() > 255:
            np.clip(array, 0, 65535, out=array)
            array //= 257
        else:
            np.clip(array, 0, 255, out=array)
        return Image.fromarray(array.astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels hold arbitrary colours; put them on white like an image viewer does.
        # Pasting through the alpha mask gives alpha_composite's pixels with half its peak memory.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return rgb
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


def _open_within_budget(
    stream: io.BufferedIOBase, max_shorter_side: int | None, budget: float
) -> Image.Image:
    """Open (headers only), set up reduced-size decoding, and check the pixel budget."""
    if not stream.read(1):
        raise UnusableImage("empty file (0 bytes)")
    stream.seek(0)
    _lift_pillow_limit(budget)
    with warnings.catch_warnings():
        # Pillow warns about big images while opening; the budget below decides instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(stream)
    declared = image.size
    if max_shorter_side and isinstance(image, JpegImageFile):  # JPEG and phone MPO files
        # draft keeps both sides >= the request, so the resize afterwards still has detail.
        image.draft("RGB", (max_shorter_side, max_shorter_side))
    _check_budget(image, declared, budget)
    return image


def _unusable(err: Exception, budget: float) -> UnusableImage:
    """The skip reason for whatever a decoder raised."""
    if isinstance(err, UnusableImage):
        return err
    if isinstance(err, Image.DecompressionBombError):
        return _bomb_reason(err, budget)
    if isinstance(err, UnidentifiedImageError):
        return UnusableImage("not a readable image (unknown or corrupt format)")
    if isinstance(err, MemoryError):
        return UnusableImage("image too large to decode in memory")
    # Malformed files surface as OSError, SyntaxError, ValueError, struct.error, EOFError,
    # IndexError... depending on the codec: any of them means "this file is unusable".
    return UnusableImage(f"corrupt or truncated image ({type(err).__name__}: {err})")


def _decode_opened(
    stream: io.BufferedIOBase, max_shorter_side: int | None, budget: float
) -> Image.Image:
    """Decode an open stream; every decoder failure becomes an UnusableImage with a reason."""
    try:
        image = _open_within_budget(stream, max_shorter_side, budget)
        image.load()
        return _to_rgb(_upright(image))
    except Exception as err:
        raise _unusable(err, budget) from err


def _normalise_decoded(image: Image.Image, budget: float) -> Image.Image:
    """A PIL image someone else opened (datasets, a user) through the same normalisation."""
    _check_budget(image, image.size, budget)
    try:
        image.load()
        return _to_rgb(_upright(image))
    except Exception as err:
        raise _unusable(err, budget) from err


def check_image(
    source: str | Path | bytes, *, max_megapixels: float | None = None
) -> tuple[int, int]:
    """Read only the header: the image's (width, height), or UnusableImage with the reason.

    Cheap (no pixel is decoded), so a command can refuse a bad or over-budget file before it
    spends time loading a model. `max_megapixels` defaults as in `pixel_budget`.
    """
    budget = pixel_budget(max_megapixels)
    with _open_source(source) as stream:
        try:
            with _open_within_budget(stream, None, budget) as image:
                return image.size
        except Exception as err:
            raise _unusable(err, budget) from err


def decode_rgb(
    source: str | Path | bytes | Image.Image,
    max_shorter_side: int | None = None,
    *,
    slack: float = 1.0,
    max_megapixels: float | None = None,
) -> Image.Image:
    """Decode a file, bytes or an opened PIL image into an upright RGB image, optionally downscaled.

    This is koin-hf's one decoder: 16-bit images are scaled (not clipped to white), transparency
    goes on white (not black), CMYK and palette images become RGB, EXIF orientation is applied.
    An image whose header declares more than `max_megapixels` (default: `pixel_budget()`) is
    refused before any pixel is decoded.
    `max_shorter_side` caps the shorter side; JPEGs are then decoded at reduced size straight
    from the DCT (Pillow's draft mode), which is several times cheaper than a full decode.
    `slack` > 1 tolerates a shorter side up to `slack * max_shorter_side` after that decode and
    skips the resampling pass: for callers that crop and resize anyway (training augmentation),
    the pass costs as much as the decode and only throws detail away.
    Raises UnusableImage with a human-readable reason, never a codec-specific exception.
    """
    budget = pixel_budget(max_megapixels)
    if isinstance(source, Image.Image):
        image = _normalise_decoded(source, budget)
    else:
        with _open_source(source) as stream:
            image = _decode_opened(stream, max_shorter_side, budget)
    if max_shorter_side and min(image.size) > max_shorter_side * slack:
        image = downscale(image, max_shorter_side)
    return image


def image_bytes_for_dataset(
    source: str | Path,
    max_shorter_side: int | None = None,
    quality: int = 95,
    *,
    max_megapixels: float | None = None,
) -> bytes:
    """The bytes the prepared dataset stores for one photo: always an upright RGB JPEG.

    The pixels are `decode_rgb(source, max_shorter_side)`'s, encoded as JPEG. A JPEG that is
    already RGB, upright and small enough is stored as it is (after a full decode proves it
    intact, and those bytes decode to the same pixels): re-encoding would only lose quality.
    Raises UnusableImage with the skip reason.
    """
    image = decode_rgb(source, max_shorter_side, max_megapixels=max_megapixels)
    with _open_source(source) as stream:
        if _is_storable_as_is(stream, max_shorter_side):
            stream.seek(0)
            return stream.read()
    return encode_jpeg(image, quality)


def _is_storable_as_is(stream: io.BufferedIOBase, max_shorter_side: int | None) -> bool:
    """True for an RGB, upright JPEG whose shorter side needs no reduction."""
    try:
        stream.seek(0)
        with Image.open(stream) as image:
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
