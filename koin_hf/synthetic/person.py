"""One whole person: `render_person` draws a head-and-shoulders sprite, `paste_person` places it.

`render_person` layers clothes, hair, face, features and occluders in drawing order;
`paste_person` scales, turns, rolls and blurs the sprite onto a photo and returns the face box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from koin_hf.synthetic.basics import Box, _mix, _shade
from koin_hf.synthetic.features import (
    _draw_brow,
    _draw_eye,
    _draw_fringe,
    _draw_glasses,
    _draw_hair_back,
    _draw_mouth,
)
from koin_hf.synthetic.identity import Identity, Look
from koin_hf.synthetic.occluders import _draw_hat, _draw_mask
from koin_hf.synthetic.sprite import _SPRITE_BOTTOM, _SPRITE_TOP, Sprite, _face_outline


def render_person(
    ident: Identity, look: Look, px: float, bottom: float = _SPRITE_BOTTOM
) -> tuple[Image.Image, Image.Image]:
    """Draw a head-and-shoulders sprite; returns (rgb, mask) with the face centre at the sprite's
    `(_SPRITE_X * px, -_SPRITE_TOP * px)`; the torso reaches `bottom` face units down."""
    sp = Sprite(px, bottom)
    w, h = ident.face_w, ident.face_h
    hair = _mix(
        ident.hair_colour, (255, 255, 255) if look.hair_tint > 0 else (0, 0, 0), abs(look.hair_tint)
    )
    skin = ident.skin
    shift = look.yaw * 0.3 * w  # features move towards the side the head turns to
    # Shoulders and clothes, down to the bottom of the sprite.
    t = np.linspace(0, math.pi / 2, 10)
    reach = 2.2 * look.shoulders
    arc_x = 0.5 * w + (reach - 0.5 * w) * np.sin(t)
    arc_y = h + 1.25 - 0.85 * np.cos(t)
    right_x = np.concatenate([arc_x, [reach + 0.1]])
    right_y = np.concatenate([arc_y, [sp.bottom]])
    sp.polygon(
        np.concatenate([right_x, -right_x[::-1]]),
        np.concatenate([right_y, right_y[::-1]]),
        look.clothes,
    )
    for side in (-1, 1):  # where the arms meet the body, so the torso is not a plain box
        sp.line(
            side * np.array([reach * 0.8, reach * 0.86]),
            np.array([h + 1.2, sp.bottom]),
            (*_shade(look.clothes, 0.75), 255),
            0.05,
        )
    _draw_hair_back(sp, ident, hair, look.hair_length)
    neck = _shade(skin, 0.86)
    sp.polygon(
        np.array([-0.4, 0.4, 0.44, -0.44]) * w,
        np.array([0.4 * h, 0.4 * h, h + 0.45, h + 0.45]),
        neck,
    )
    if look.neckline == "v":
        sp.polygon(
            np.array([-0.45 * w, 0.45 * w, 0.0]), np.array([h + 0.4, h + 0.4, h + 0.95]), neck
        )
    else:
        sp.ellipse(0, h + 0.38, 0.55 * w, 0.2, neck)
    sp.ellipse(0, h * 0.98, 0.42 * w, 0.2, (*_shade(skin, 0.6), 90), solid=False)
    if ident.hair_back not in ("long", "wavy", "bob"):
        for side in (-1, 1):
            if side * look.yaw > 0.45:
                continue  # the far ear hides behind the head
            ex = side * (w * 0.97 - 0.1 * look.yaw * side)
            sp.ellipse(ex, 0.05 * h, 0.12 * w, 0.21 * h, _shade(skin, 0.92))
            sp.ellipse(ex, 0.05 * h, 0.06 * w, 0.12 * h, (*_shade(skin, 0.7), 120), solid=False)
            if look.earrings:
                sp.ellipse(ex, 0.25 * h + 0.04, 0.045, 0.045, look.earrings)
    fx, fy = _face_outline(ident)
    sp.polygon(fx, fy, skin)
    # Soft shading on the side turned away from the camera.
    away = 1 if look.yaw >= 0 else -1
    half = away * fx > 0
    outer_x, outer_y = fx[half], fy[half]
    order = np.argsort(outer_y)
    outer_x, outer_y = outer_x[order], outer_y[order]
    shade = (*_shade(skin, 0.8), int(25 + 45 * abs(look.yaw)))
    sp.polygon(
        np.concatenate([outer_x, outer_x[::-1] * 0.72]),
        np.concatenate([outer_y, outer_y[::-1]]),
        shade,
        solid=False,
    )
    ey = ident.eye_y
    if ident.blush:
        for side in (-1, 1):
            sp.ellipse(
                side * 0.5 * w + shift,
                ey + 0.38,
                0.2 * w,
                0.11,
                (236, 120, 130, ident.blush),
                solid=False,
            )
    for fxx, fyy in ident.freckles:
        sp.ellipse(fxx * w + shift, ey + fyy, 0.018, 0.018, (*_shade(skin, 0.7), 150), solid=False)
    if ident.facial_hair == "stubble":
        lx, ly = _face_outline(ident, n=72)
        keep = ly > ey + ident.nose_len + 0.12
        sp.polygon(lx[keep] * 0.98, ly[keep] * 0.99, (*_shade(hair, 0.9), 70), solid=False)
    eye_centres = []
    brow = _mix(hair, (40, 30, 26), 0.55)
    for side in (-1, 1):
        size = 1.0 - 0.3 * max(0.0, look.yaw * side)  # the far eye looks narrower
        cx = side * ident.eye_gap * w + shift * (1.1 if side * look.yaw > 0 else 0.9)
        eye_centres.append((cx, ey, size))
        _draw_eye(sp, ident, look, cx, ey, side, size)
        _draw_brow(sp, ident, cx, ey, side, brow, size)
    nose_y = ey + ident.nose_len
    nx = shift * 1.25
    nshade = (*_shade(skin, 0.78), 255)
    bridge_side = 1 if look.yaw >= 0 else -1
    sp.line(
        np.array([nx - bridge_side * 0.07, nx - bridge_side * ident.nose_w * 0.8]),
        np.array([ey + 0.08, nose_y - 0.05]),
        (*_shade(skin, 0.85), 200),
        0.02,
    )
    for side in (-1, 1):
        sp.ellipse(
            nx + side * ident.nose_w * 0.55,
            nose_y,
            0.045 * ident.nose_w / 0.14,
            0.028,
            _shade(skin, 0.55),
        )
    tip_x = np.linspace(-ident.nose_w, ident.nose_w, 9)
    sp.line(nx + tip_x, nose_y + 0.035 - 0.03 * (1 - (tip_x / ident.nose_w) ** 2), nshade, 0.018)
    mouth_y = nose_y + ident.mouth_gap
    if ident.facial_hair == "moustache":
        mx = np.linspace(-ident.mouth_w * 0.9, ident.mouth_w * 0.9, 9)
        sp.polygon(
            np.concatenate([mx, mx[::-1]]) + shift * 1.1,
            np.concatenate(
                [
                    mouth_y - 0.1 - 0.03 * (1 - (mx / ident.mouth_w) ** 2),
                    np.full_like(mx, mouth_y - 0.04),
                ]
            ),
            hair,
        )
    _draw_mouth(sp, ident, look, shift * 1.1, mouth_y)
    if ident.mole:
        sp.ellipse(ident.mole[0] * w + shift, ident.mole[1] * h, 0.028, 0.028, (70, 48, 40))
    hat_edge = ey - ident.eye_h - 0.07
    _draw_fringe(sp, ident, hair)
    if look.glasses and ident.glasses:
        _draw_glasses(sp, ident, eye_centres)
    if look.mask is not None:
        _draw_mask(sp, ident, look, nose_y, shift)
    if look.hat is not None:
        _draw_hat(sp, ident, look, hat_edge, shift)
    return sp.rgb, sp.mask


def _rotated_extent(half_w: float, half_h: float, degrees: float) -> tuple[float, float]:
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    return half_w * c + half_h * s, half_w * s + half_h * c


def paste_person(
    canvas: Image.Image,
    ident: Identity,
    look: Look,
    face_height: float,
    centre: tuple[float, float],
    roll: float = 0.0,
    blur: float = 0.0,
    placed: list[PlacedFace] | None = None,
) -> Box:
    """Draw a person with the face `face_height` pixels tall centred at `centre`; return its box.

    When `placed` is given, the face's box and eye centres are appended to it (koin synth's
    faces.jsonl records them, so the face path can be tested against the truth).

    The sprite is drawn at twice the size and reduced afterwards, which antialiases Pillow's
    hard-edged polygons.
    """
    supersample = 2
    unit = face_height / (2 * ident.face_h)  # pixels per face unit
    # The torso only needs to reach the bottom of the picture (drawing less is faster).
    bottom = (canvas.height - centre[1]) / unit / max(0.5, math.cos(math.radians(roll))) + 0.3
    bottom = float(np.clip(bottom, 2.0, 9.0))
    px = unit * supersample
    rgb, mask = render_person(ident, look, px, bottom)
    # Reduce first: rotating the full-size sprite would cost four times as much.
    sprite = rgb.reduce(supersample).convert("RGBA")
    sprite.putalpha(mask.reduce(supersample))
    squash = 1 - 0.12 * abs(look.yaw)  # a turned head is narrower
    if squash != 1:
        sprite = sprite.resize(
            (max(1, round(sprite.width * squash)), sprite.height), Image.BILINEAR
        )
    # The face centre sits on the vertical mid-line, `below` pixels under the sprite's centre;
    # rotating about the centre (counter-clockwise, expanding the canvas) moves it to (fx, fy).
    below = -_SPRITE_TOP * unit - sprite.height / 2
    sprite = sprite.rotate(roll, resample=Image.BILINEAR, expand=True)
    theta = math.radians(roll)
    fx = sprite.width / 2 + below * math.sin(theta)
    fy = sprite.height / 2 + below * math.cos(theta)
    if blur > 0:
        sprite = sprite.filter(ImageFilter.GaussianBlur(blur))
    canvas.paste(sprite, (round(centre[0] - fx), round(centre[1] - fy)), sprite)
    half_w, half_h = _rotated_extent(
        ident.face_w * squash * face_height / (2 * ident.face_h), face_height / 2, roll
    )
    x0, y0 = max(0, round(centre[0] - half_w)), max(0, round(centre[1] - half_h))
    x1 = min(canvas.width, round(centre[0] + half_w))
    y1 = min(canvas.height, round(centre[1] + half_h))
    box = (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))
    if placed is not None:
        eyes = [
            _eye_in_canvas(ident, look, side, unit * squash, unit, centre, theta)
            for side in (-1, 1)
        ]
        placed.append(PlacedFace(box, eyes[0], eyes[1]))
    return box


@dataclass(frozen=True)
class PlacedFace:
    """Where a pasted face ended up: its box and eye centres in canvas pixels.

    `left_eye` is the eye on the picture's left in the upright face (the person's right eye).
    """

    box: Box
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]


def _eye_in_canvas(
    ident: Identity,
    look: Look,
    side: int,
    unit_x: float,
    unit_y: float,
    centre: tuple[float, float],
    theta: float,
) -> tuple[float, float]:
    """An eye centre (render_person's face units) in canvas pixels after squash and roll."""
    shift = look.yaw * 0.3 * ident.face_w
    cx = side * ident.eye_gap * ident.face_w + shift * (1.1 if side * look.yaw > 0 else 0.9)
    dx, dy = cx * unit_x, ident.eye_y * unit_y
    # Image.rotate(roll) turns counter-clockwise on screen (y points down).
    return (
        centre[0] + dx * math.cos(theta) + dy * math.sin(theta),
        centre[1] - dx * math.sin(theta) + dy * math.cos(theta),
    )
