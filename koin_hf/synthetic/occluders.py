"""What hard cases put over the face: masks (surgical, KF94) and hats (cap, beanie, bucket).

They cover exactly the parts a model trained on normal photos relies on: nose, mouth and chin
for masks; hair and brows, down to the eyes, for hats.
"""

from __future__ import annotations

import math

import numpy as np

from koin_hf.synthetic.basics import _shade
from koin_hf.synthetic.identity import Identity, Look
from koin_hf.synthetic.sprite import Sprite, _ellipse_points, _face_outline


def _draw_mask(sp: Sprite, ident: Identity, look: Look, nose_y: float, shift: float) -> None:
    top = nose_y - 0.22 * ident.face_h * 0.6
    fx, fy = _face_outline(ident, scale=1.04, n=96)
    keep = fy > top
    xs, ys = fx[keep], fy[keep]
    order = np.argsort(np.arctan2(ys - top, xs))
    xs, ys = xs[order], ys[order]
    xs = np.clip(xs + shift * 0.5, -ident.face_w * 1.04, ident.face_w * 1.04)
    top_x = np.linspace(xs[-1], xs[0], 15)
    top_y = top - 0.08 * np.exp(-(((top_x - shift) / 0.25) ** 2))
    colour = look.mask
    sp.polygon(np.concatenate([xs, top_x]), np.concatenate([ys, top_y]), colour)
    fold = (*_shade(colour, 0.8), 255)
    if look.mask_style == "surgical":
        for k in (0.3, 0.55, 0.78):
            y = top + k * (ident.face_h - top)
            half = ident.face_w * (0.95 - 0.35 * k)
            sp.line(
                np.array([-half + shift * 0.5, half + shift * 0.5]), np.array([y, y]), fold, 0.018
            )
    else:
        seam_y = np.linspace(top - 0.06, ident.face_h * 0.98, 8)
        sp.line(shift + 0.03 * np.sin(seam_y * 3), seam_y, fold, 0.02)
    for side in (-1, 1):
        sp.line(
            np.array([side * ident.face_w * 0.95, side * ident.face_w * 1.02]),
            np.array([top + 0.05, 0.0]),
            (*_shade(colour, 0.9), 255),
            0.025,
        )


def _draw_hat(sp: Sprite, ident: Identity, look: Look, edge_y: float, shift: float) -> None:
    w, h = ident.face_w, ident.face_h
    colour, dark = look.hat_colour, _shade(look.hat_colour, 0.72)
    if look.hat == "bucket":
        xs, ys = _ellipse_points(
            0, edge_y - 0.12, w * 1.02, h * 0.78, n=40, start=math.pi, stop=2 * math.pi
        )
        sp.polygon(xs, ys, colour)
        brim_x = np.array([-w * 1.08, w * 1.08, w * 1.42, -w * 1.42])
        brim_y = np.array([edge_y - 0.16, edge_y - 0.16, edge_y + 0.06, edge_y + 0.06])
        sp.polygon(brim_x + shift * 0.3, brim_y, dark)
        return
    xs, ys = _ellipse_points(
        0, edge_y, w * 1.18 * ident.hair_volume, h * 1.05, n=44, start=math.pi, stop=2 * math.pi
    )
    sp.polygon(xs, ys, colour)
    if look.hat == "beanie":
        band_x = np.array([-w * 1.2, w * 1.2, w * 1.2, -w * 1.2]) * ident.hair_volume
        band_y = np.array([edge_y - 0.26, edge_y - 0.26, edge_y + 0.02, edge_y + 0.02])
        sp.polygon(band_x, band_y, dark)
        for x in np.linspace(-w * 1.1, w * 1.1, 12):
            sp.line(
                np.array([x, x]),
                np.array([edge_y - 0.24, edge_y]),
                (*_shade(colour, 0.6), 255),
                0.015,
            )
        return
    # Baseball cap: a brim seen from the front, and its shadow on the upper face.
    sp.draw.polygon(
        sp.points(
            np.array([-w, w, w, -w]), np.array([edge_y, edge_y, edge_y + 0.25, edge_y + 0.25])
        ),
        fill=(0, 0, 0, 60),
    )
    sp.ellipse(shift * 0.4, edge_y - 0.02, w * 1.1, 0.13, dark)
    sp.line(
        np.array([shift * 0.4 - w, shift * 0.4 + w]),
        np.array([edge_y - 0.13, edge_y - 0.13]),
        (*_shade(colour, 1.2), 255),
        0.02,
    )
