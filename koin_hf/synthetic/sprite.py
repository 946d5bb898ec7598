"""The canvas a person is drawn on: an RGB image plus opacity mask addressed in face units.

Also the two outlines the drawing modules share: an ellipse arc and the face contour.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from koin_hf.synthetic.identity import Identity

# Sprite extent in face units around the face centre: hair above, shoulders below.
_SPRITE_X = 2.5
_SPRITE_TOP = -2.3
_SPRITE_BOTTOM = 3.6


class Sprite:
    """An RGB image and its opacity mask, drawn in face units (y down, face centre at 0, 0)."""

    def __init__(self, px: float, bottom: float = _SPRITE_BOTTOM) -> None:
        self.px = px
        self.bottom = bottom
        width = int(math.ceil(2 * _SPRITE_X * px))
        height = int(math.ceil((bottom - _SPRITE_TOP) * px))
        self.rgb = Image.new("RGB", (width, height), (90, 80, 80))
        self.mask = Image.new("L", (width, height), 0)
        # An "RGBA" drawer on an RGB image blends translucent fills (blush, shadows, tints).
        self.draw = ImageDraw.Draw(self.rgb, "RGBA")
        self.mask_draw = ImageDraw.Draw(self.mask)
        self.origin = (_SPRITE_X * px, -_SPRITE_TOP * px)

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        return (self.origin[0] + x * self.px, self.origin[1] + y * self.px)

    def points(self, xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
        ox, oy = self.origin
        return list(zip((ox + xs * self.px).tolist(), (oy + ys * self.px).tolist(), strict=True))

    def polygon(self, xs: np.ndarray, ys: np.ndarray, fill: tuple, solid: bool = True) -> None:
        pts = self.points(xs, ys)
        self.draw.polygon(pts, fill=fill)
        if solid:
            self.mask_draw.polygon(pts, fill=255)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: tuple, solid=True) -> None:
        x0, y0 = self.to_px(cx - rx, cy - ry)
        x1, y1 = self.to_px(cx + rx, cy + ry)
        self.draw.ellipse((x0, y0, x1, y1), fill=fill)
        if solid:
            self.mask_draw.ellipse((x0, y0, x1, y1), fill=255)

    def line(self, xs: np.ndarray, ys: np.ndarray, fill: tuple, width: float) -> None:
        self.draw.line(self.points(xs, ys), fill=fill, width=max(1, int(round(width * self.px))))


def _ellipse_points(cx, cy, rx, ry, n=48, start=0.0, stop=2 * math.pi):
    t = np.linspace(start, stop, n)
    return cx + rx * np.cos(t), cy + ry * np.sin(t)


def _face_outline(ident: Identity, scale: float = 1.0, n: int = 72):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    xs = ident.face_w * scale * np.cos(t)
    ys = ident.face_h * scale * np.sin(t)
    lower = np.clip(np.sin(t), 0, None)
    xs = xs * (1 - (1 - ident.jaw) * lower**ident.chin_power)
    # Temples are a little narrower than the cheekbones.
    xs = xs * (1 - 0.06 * np.clip(-np.sin(t), 0, None) ** 2)
    return xs, ys
