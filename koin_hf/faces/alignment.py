"""Alignment: every face becomes an upright, square crop at the model's input size.

One affine warp per face, from the full-resolution image: the eye line is turned horizontal
(when the detector gives the eyes), the square around the face grows by `margin` on each side
(hair, jaw and ears carry identity too, and a classifier fine-tuned on whole photos expects
some context), and the result is `size` x `size` pixels. Parts of the square outside the photo
are filled with grey rather than stretched.
"""

from __future__ import annotations

import math

from PIL import Image

from koin_hf.errors import KoinError
from koin_hf.faces.detection import Face, eye_angle

DEFAULT_MARGIN = 0.4
FILL = (128, 128, 128)


def crop_geometry(face: Face, margin: float = DEFAULT_MARGIN) -> tuple[float, float, float, float]:
    """(centre x, centre y, side, angle in degrees) of the square a face is cropped from."""
    x0, y0, x1, y1 = face.box
    angle = eye_angle(face) or 0.0
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    return (x0 + x1) / 2, (y0 + y1) / 2, side, angle


def align_face(
    image: Image.Image, face: Face, size: int = 224, margin: float = DEFAULT_MARGIN
) -> Image.Image:
    """The face as an upright `size` x `size` RGB crop (see the module docstring)."""
    if size < 1:
        raise KoinError(f"face crop size must be a positive number of pixels, not {size}")
    if margin < 0:
        raise KoinError(f"face crop margin must be 0 or more, not {margin}")
    cx, cy, side, angle = crop_geometry(face, margin)
    side = max(side, 1.0)
    if image.mode != "RGB":
        image = image.convert("RGB")
    # Work on the part of the photo the turned square covers, not the whole photo: a phone
    # photo is 1.5 M pixels, a face's square a few percent of that.
    theta = math.radians(angle)
    reach = side / 2 * (abs(math.cos(theta)) + abs(math.sin(theta))) + 2
    left, top = max(0, math.floor(cx - reach)), max(0, math.floor(cy - reach))
    right = min(image.width, math.ceil(cx + reach))
    bottom = min(image.height, math.ceil(cy + reach))
    if right > left and bottom > top:
        image = image.crop((left, top, right, bottom))
        cx, cy = cx - left, cy - top
    # A large face reduced in one bilinear warp aliases; shrink the source first (cheap).
    factor = int(side // size)
    if factor >= 2:
        image = image.reduce(factor)
        cx, cy, side = cx / factor, cy / factor, side / factor
    scale = side / size
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    half = size / 2
    # Output pixel (u, v) reads input (x, y) = centre + R(angle) * scale * (u - half, v - half):
    # the output's x axis runs along the eye line.
    coefficients = (
        cos,
        -sin,
        cx - cos * half + sin * half,
        sin,
        cos,
        cy - sin * half - cos * half,
    )
    return image.transform(
        (size, size),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=FILL,
    )
