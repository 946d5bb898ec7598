"""koin_hf.data.images: every photo kind users have decodes upright and RGB, or gives a reason."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rawkoin import (
    QUADRANT_COLOURS,
    close,
    exif_rotated_jpeg,
    jpeg_bytes,
    png16_rgb,
    png_bytes,
    quadrant_array,
    quadrant_colours_of,
)

from koin_hf.data import images
from koin_hf.data.images import (
    UnusableImage,
    decode_rgb,
    downscale,
    file_problem,
    image_bytes_for_dataset,
    skip_reason_for_name,
)


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _assert_upright_quadrants(image: Image.Image, width=64, height=48) -> None:
    assert image.mode == "RGB"
    assert image.size == (width, height)
    for got, want in zip(quadrant_colours_of(image), QUADRANT_COLOURS, strict=True):
        assert close(got, want), (got, want)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    _assert_upright_quadrants(decode_rgb(exif_rotated_jpeg(orientation)))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_with_reduced_size_decoding(orientation):
    # Draft (DCT-scaled) decoding and the rotation must compose: 640x480 scene, capped at 60.
    image = decode_rgb(exif_rotated_jpeg(orientation, 640, 480), max_shorter_side=60)
    _assert_upright_quadrants(image, width=80, height=60)


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("JPEG", {})],
)
def test_rgb_formats_keep_their_pixels(fmt, kwargs):
    source = Image.fromarray(quadrant_array(), "RGB")
    _assert_upright_quadrants(decode_rgb(_save(source, fmt, **kwargs)))


def test_cmyk_jpeg_and_tiff_become_the_right_rgb():
    red = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # no cyan, full magenta+yellow: red
    for fmt in ("JPEG", "TIFF"):
        image = decode_rgb(_save(red, fmt))
        assert image.mode == "RGB"
        assert close(image.getpixel((16, 16)), (255, 0, 0), tolerance=30), fmt


def test_grayscale_becomes_equal_rgb_channels():
    gray = Image.new("L", (20, 10), 77)
    for fmt in ("PNG", "JPEG"):
        image = decode_rgb(_save(gray, fmt))
        assert image.mode == "RGB"
        r, g, b = image.getpixel((5, 5))
        assert r == g == b and abs(r - 77) <= 2


def test_palette_images_including_gif():
    source = Image.fromarray(quadrant_array(), "RGB").quantize(colors=8)
    assert source.mode == "P"
    for fmt in ("PNG", "GIF"):
        _assert_upright_quadrants(decode_rgb(_save(source, fmt)))


def test_palette_transparency_goes_on_white():
    palette_image = Image.new("P", (10, 10), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette_image.putpixel((0, 0), 1)
    image = decode_rgb(_save(palette_image, "PNG", transparency=0))
    assert image.getpixel((5, 5)) == (255, 255, 255)  # transparent black index: white, not black
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_rgba_is_composited_on_white():
    array = np.zeros((10, 20, 4), dtype=np.uint8)  # fully transparent black...
    array[:, 10:] = (0, 0, 255, 255)  # ...and opaque blue
    array[0, 0] = (255, 0, 0, 128)  # half-transparent red
    image = decode_rgb(_save(Image.fromarray(array, "RGBA"), "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((15, 5)) == (0, 0, 255)
    assert close(image.getpixel((0, 0)), (255, 127, 127), tolerance=2)


def test_16_bit_grayscale_png_is_scaled_not_clipped():
    array = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    data = _save(Image.fromarray(array), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = decode_rgb(data)
    values = [image.getpixel((x, 0))[0] for x in range(4)]
    assert values[0] == 0 and values[3] == 255
    assert abs(values[1] - 64) <= 1 and abs(values[2] - 128) <= 1  # clipping would give 255s


def test_16_bit_rgb_png():
    array = np.zeros((4, 6, 3), dtype=np.uint16)
    array[..., 0] = 65535
    array[..., 2] = 32768
    image = decode_rgb(png16_rgb(array))
    assert image.mode == "RGB" and image.size == (6, 4)
    assert close(image.getpixel((3, 2)), (255, 0, 128), tolerance=1)


def test_downscale_caps_shorter_side_and_never_upscales():
    assert downscale(Image.new("RGB", (1000, 800)), 100).size == (125, 100)
    assert downscale(Image.new("RGB", (50, 40)), 100).size == (50, 40)
    # Reduced-size JPEG decoding lands on the same size as a full decode + resize.
    big = jpeg_bytes(Image.fromarray(quadrant_array(1000, 800), "RGB"))
    assert decode_rgb(big, max_shorter_side=100).size == (125, 100)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not a readable image"),
        (os.urandom(2048), "not a readable image"),
    ],
)
def test_garbage_is_unusable_with_a_reason(data, reason):
    with pytest.raises(UnusableImage, match=reason):
        decode_rgb(data)


def test_truncated_images_are_unusable():
    for fmt in ("JPEG", "PNG"):
        whole = _save(Image.fromarray(quadrant_array(200, 150), "RGB"), fmt)
        with pytest.raises(UnusableImage, match="corrupt or truncated"):
            decode_rgb(whole[: len(whole) // 2])


def test_decompression_bomb_header_is_unusable_not_a_crash():
    bomb = png_bytes(60_000, 60_000, 8, 0, b"\x00")  # 3.6 gigapixels claimed, a few bytes given
    with pytest.raises(UnusableImage, match="too large"):
        decode_rgb(bomb)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("photo.jpg", None),
        ("PHOTO.JPG", None),
        ("scan.Jpeg", None),
        ("x.PNG", None),
        ("x.WebP", None),
        (".DS_Store", "system file"),
        ("Thumbs.db", "system file"),
        ("desktop.ini", "system file"),
        ("._photo.jpg", "hidden file"),  # macOS AppleDouble companion
        ("notes.txt", "not an image file"),
        ("README", "not an image file"),
        ("clip.mp4", "not an image file"),
    ],
)
def test_skip_reason_for_name(name, expected):
    reason = skip_reason_for_name(Path(name))
    assert reason == expected if expected is None else expected in reason


def test_unreadable_entries_get_a_reason_without_blocking(tmp_path):
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "gone.jpg")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening a FIFO would block forever: it must be refused before open()
    for path, reason in [
        (folder, "a folder"),
        (dangling, "broken symbolic link"),
        (fifo, "not a regular file"),
    ]:
        assert reason in file_problem(path)
        with pytest.raises(UnusableImage, match=reason):
            decode_rgb(path)
        with pytest.raises(UnusableImage, match=reason):
            image_bytes_for_dataset(path, 64)


def test_permission_denied_is_a_reason(tmp_path, monkeypatch):
    path = tmp_path / "locked.jpg"
    path.write_bytes(jpeg_bytes(Image.new("RGB", (8, 8))))
    path.chmod(0)
    if os.access(path, os.R_OK):
        # root reads everything whatever the mode bits say: make os.access answer the way the
        # kernel would for an ordinary user, which is the check the code relies on.
        monkeypatch.setattr(images.os, "access", lambda p, mode: False)
    try:
        assert file_problem(path) == "unreadable (permission denied)"
        with pytest.raises(UnusableImage, match="permission denied"):
            decode_rgb(path)
    finally:
        path.chmod(0o644)


def test_dataset_bytes_keep_small_upright_jpegs_and_normalise_the_rest(tmp_path):
    small = tmp_path / "small.jpg"
    small.write_bytes(jpeg_bytes(Image.fromarray(quadrant_array(), "RGB"), quality=90))
    assert image_bytes_for_dataset(small, 256) == small.read_bytes()  # no generational loss

    rotated = tmp_path / "rotated.JPG"
    rotated.write_bytes(exif_rotated_jpeg(6))
    stored = Image.open(io.BytesIO(image_bytes_for_dataset(rotated, 256)))
    assert stored.format == "JPEG"
    assert stored.getexif().get(0x0112, 1) == 1  # no orientation left for a viewer to re-apply
    _assert_upright_quadrants(stored)

    big = tmp_path / "big.png"
    big.write_bytes(_save(Image.fromarray(quadrant_array(640, 480), "RGB"), "PNG"))
    stored = Image.open(io.BytesIO(image_bytes_for_dataset(big, 120)))
    assert stored.format == "JPEG" and stored.size == (160, 120)

    cmyk = tmp_path / "cmyk.jpg"
    cmyk.write_bytes(_save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    stored = Image.open(io.BytesIO(image_bytes_for_dataset(cmyk, None)))
    assert stored.mode == "RGB" and close(stored.getpixel((8, 8)), (255, 0, 0), tolerance=30)
