"""Alignment turns a rolled face upright, from its eyes, at the requested size."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from koin_hf.errors import KoinError
from koin_hf.faces.alignment import align_face
from koin_hf.faces.detection import Face


def _pattern(angle: float) -> tuple[Image.Image, Face]:
    """A 'face' of two red eyes and a blue mouth, rolled by `angle` degrees (clockwise on
    screen), on a 400x300 canvas; the Face carries the box and the eyes where they ended up."""
    image = Image.new("RGB", (400, 300), (20, 120, 20))
    centre = (210.0, 140.0)
    theta = math.radians(angle)

    def at(dx: float, dy: float) -> tuple[float, float]:  # rotate clockwise on screen (y down)
        return (
            centre[0] + dx * math.cos(theta) - dy * math.sin(theta),
            centre[1] + dx * math.sin(theta) + dy * math.cos(theta),
        )

    draw = ImageDraw.Draw(image)
    eyes = [at(-25, -15), at(25, -15)]
    for x, y in eyes:
        draw.ellipse((x - 7, y - 7, x + 7, y + 7), fill=(255, 0, 0))
    mouth = [at(dx, 30) for dx in range(-20, 21, 2)]
    for x, y in mouth:
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(0, 0, 255))
    box = (centre[0] - 50, centre[1] - 55, centre[0] + 50, centre[1] + 55)
    return image, Face(box, 1.0, {"left_eye": eyes[0], "right_eye": eyes[1]})


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


@pytest.mark.parametrize("angle", [-35.0, 0.0, 30.0])
def test_a_rolled_pattern_comes_out_upright(angle):
    image, face = _pattern(angle)
    crop = np.asarray(align_face(image, face, size=112, margin=0.2)).astype(int)
    assert crop.shape == (112, 112, 3)
    red = (crop[..., 0] > 180) & (crop[..., 1] < 80) & (crop[..., 2] < 80)
    blue = (crop[..., 2] > 180) & (crop[..., 0] < 80)
    left_half, right_half = red.copy(), red.copy()
    left_half[:, 56:] = False
    right_half[:, :56] = False
    (lx, ly), (rx, ry) = _centroid(left_half), _centroid(right_half)
    assert abs(ly - ry) < 2.0, "the eye line is horizontal"
    assert rx - lx > 20
    mx, my = _centroid(blue)
    assert my > max(ly, ry) + 15, "the mouth is below the eyes"
    assert abs(mx - (lx + rx) / 2) < 3.0, "and centred under them"


def test_without_eyes_the_box_is_cropped_square_and_unrotated():
    image, face = _pattern(0.0)
    plain = Face(face.box, 1.0, None)
    assert align_face(image, plain, size=64).size == (64, 64)
    with pytest.raises(KoinError, match="size"):
        align_face(image, plain, size=0)


def test_faces_at_the_border_are_padded_not_stretched():
    image = Image.new("RGB", (100, 100), (255, 255, 255))
    crop = align_face(image, Face((0, 0, 40, 40), 1.0), size=50, margin=0.5)
    assert crop.getpixel((0, 0)) == (128, 128, 128)
    assert crop.getpixel((40, 40)) == (255, 255, 255)
