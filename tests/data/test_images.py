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
    bomb_png,
    close,
    exif_rotated_jpeg,
    jpeg_bytes,
    jpeg_claiming,
    png16_rgb,
    png_bytes,
    quadrant_array,
    quadrant_colours_of,
)

from koin_hf.data import images
from koin_hf.data.images import (
    ImageTooLarge,
    UnusableImage,
    check_image,
    decode_rgb,
    downscale,
    file_problem,
    image_bytes_for_dataset,
    pixel_budget,
    skip_reason_for_name,
)
from koin_hf.errors import KoinError


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


# ---------------------------------------------------------------------------------------------
# The pixel budget: checked from the header, before any pixel is decoded


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png(20_000, 20_000)  # ~390 KB declaring 400 megapixels


def test_a_bomb_png_is_refused_from_its_header(bomb):
    assert len(bomb) < 500_000
    for call in (lambda: decode_rgb(bomb), lambda: check_image(bomb)):
        with pytest.raises(ImageTooLarge) as caught:
            call()
        # Pillow's own guard trips first at this size; its refusal is said in the budget's words.
        assert str(caught.value) == (
            "image too large: 400,000,000 pixels (400.0 megapixels), over the budget of 64 "
            "megapixels (raise it with --max_megapixels or $KOIN_MAX_MEGAPIXELS)"
        )


def test_an_image_below_pillows_guard_but_over_the_budget_is_refused():
    data = png_bytes(9000, 8000, 8, 0, b"")  # 72 MP: Pillow would only warn; no pixel data given
    with pytest.raises(
        ImageTooLarge,
        match=r"9000x8000 pixels \(72\.0 megapixels\), over the budget of 64 megapixels",
    ):
        decode_rgb(data)


def test_prepare_refuses_over_budget_files_before_reading_them_whole(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(9000, 8000, 8, 0, b""))
    with pytest.raises(ImageTooLarge, match="over the budget of 64"):
        image_bytes_for_dataset(path, 256)


def test_the_budget_is_exact_and_can_be_raised_or_lowered(monkeypatch):
    data = _save(Image.new("RGB", (40, 30), (10, 20, 30)), "PNG")  # 1200 pixels
    assert decode_rgb(data, max_megapixels=0.0012).size == (40, 30)
    with pytest.raises(ImageTooLarge, match="40x30 pixels"):
        decode_rgb(data, max_megapixels=0.001199)
    monkeypatch.setenv("KOIN_MAX_MEGAPIXELS", "0.001")
    with pytest.raises(ImageTooLarge, match="over the budget of 0.001"):
        decode_rgb(data)
    assert decode_rgb(data, max_megapixels=1).size == (40, 30)  # the argument wins


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf"])
def test_a_bad_budget_in_the_environment_is_a_koin_error(monkeypatch, value):
    monkeypatch.setenv("KOIN_MAX_MEGAPIXELS", value)
    with pytest.raises(KoinError, match=r"\$KOIN_MAX_MEGAPIXELS must be a positive number"):
        pixel_budget()


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True])
def test_a_bad_budget_argument_is_a_koin_error(value):
    with pytest.raises(KoinError, match="--max_megapixels must be a positive number"):
        decode_rgb(b"x", max_megapixels=value)


def test_a_jpeg_is_budgeted_at_the_size_it_is_decoded_at():
    # 2000x1600 = 3.2 MP declared; decoded for a 200-pixel shorter side, draft reads 1/8 of it.
    data = jpeg_bytes(Image.fromarray(quadrant_array(2000, 1600), "RGB"))
    with pytest.raises(ImageTooLarge):
        decode_rgb(data, max_megapixels=1)
    _assert_upright_quadrants(decode_rgb(data, 200, max_megapixels=1), width=250, height=200)


def test_a_jpeg_header_claiming_65000_pixels_a_side_is_a_reason_not_a_crash():
    data = jpeg_claiming(65_000, 65_000)
    for side in (None, 224):
        with pytest.raises(ImageTooLarge, match=r"4,225,000,000 pixels \(4225\.0 megapixels\)"):
            decode_rgb(data, side)


def test_a_reduced_size_jpeg_decode_is_budgeted_at_the_pixels_it_allocates():
    data = jpeg_claiming(12_000, 12_000)  # 144 MP claimed; decoded at 1/8 for 224 px: 2.25 MP
    with pytest.raises(ImageTooLarge, match=r"12000x12000 pixels \(144\.0 megapixels\)"):
        decode_rgb(data)
    with pytest.raises(ImageTooLarge, match="12000x12000 pixels"):
        decode_rgb(data, 224, max_megapixels=2)
    # Within the default budget at 1/8 (libjpeg pads the missing scan data with grey).
    assert decode_rgb(data, 224).size == (224, 224)


def test_a_raised_budget_lets_the_budget_decide_not_pillows_guard(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    data = png_bytes(20_000, 10_000, 8, 0, b"")  # 200 MP declared, over twice Pillow's limit
    with pytest.raises(ImageTooLarge):
        decode_rgb(data)
    # With the budget raised, the header passes and the (missing) pixel data is what fails.
    with pytest.raises(UnusableImage, match="corrupt or truncated"):
        decode_rgb(data, max_megapixels=250)


def test_pil_images_from_elsewhere_get_the_same_normalisation_and_budget():
    array = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)
    opened = Image.open(io.BytesIO(_save(Image.fromarray(array), "PNG")))
    assert np.array_equal(
        np.asarray(decode_rgb(opened)), np.asarray(decode_rgb(_save(Image.fromarray(array), "PNG")))
    )
    with pytest.raises(ImageTooLarge):
        decode_rgb(Image.new("L", (100, 100)), max_megapixels=0.005)
