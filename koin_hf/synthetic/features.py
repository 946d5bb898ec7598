"""The parts of a face that carry identity: hair (back and fringe), eyes, brows, mouth, glasses.

Each function draws one part onto a `Sprite` in face units, from an `Identity` and, where pose
or expression matter, the photo's `Look`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from koin_hf.synthetic.basics import RGB, _mix, _shade
from koin_hf.synthetic.identity import Identity, Look
from koin_hf.synthetic.sprite import Sprite, _ellipse_points


def _hair_cap(ident: Identity, cut_y: float, widen: float = 1.0):
    """The back of the hair: an ellipse around the skull, cut flat at height `cut_y`."""
    rx = ident.face_w * ident.hair_volume * widen
    ry = ident.face_h * 1.02
    xs, ys = _ellipse_points(0, -0.12 * ident.face_h, rx, ry, n=64)
    keep = ys <= cut_y
    return xs[keep], ys[keep], rx


def _draw_hair_back(sp: Sprite, ident: Identity, colour: RGB, length: float) -> None:
    w, h = ident.face_w, ident.face_h
    back = ident.hair_back
    if back in ("long", "wavy", "bob"):
        bottom = {"long": h + 1.0, "wavy": h + 0.9, "bob": 0.62 * h}[back] * length
        rx = w * ident.hair_volume * (1.08 if back == "bob" else 1.0)
        top_x, top_y = _ellipse_points(
            0, -0.12 * h, rx, h * 1.02, n=40, start=math.pi, stop=2 * math.pi
        )
        flare = 1.25 if back != "bob" else 1.08
        side = np.linspace(0, 1, 14)
        right_x = rx * (1 + (flare - 1) * side)
        if back == "wavy":
            right_x = right_x + 0.07 * np.sin(side * 14)
        right_y = -0.12 * h + side * (bottom + 0.12 * h)
        xs = np.concatenate([top_x, right_x, -right_x[::-1]])
        ys = np.concatenate([top_y, right_y, right_y[::-1]])
        sp.polygon(xs, ys, colour)
        return
    if back == "buzz":
        xs, ys, _ = _hair_cap(ident, -0.3 * h, widen=0.96)
    else:
        xs, ys, rx = _hair_cap(ident, -0.05 * h)
    sp.polygon(xs, ys, colour)
    if back == "bun":
        sp.ellipse(0, -1.12 * h - 0.12, 0.34 * w, 0.28 * w, colour)
    elif back == "curly":
        for t in np.linspace(math.pi * 1.02, math.pi * 1.98, 11):
            sp.ellipse(
                rx * 1.0 * math.cos(t), -0.12 * h + h * 1.0 * math.sin(t), 0.2 * w, 0.2 * w, colour
            )


def _hairline(ident: Identity, xs: np.ndarray, reach: float) -> np.ndarray:
    """Lower edge of the fringe at each x (face units)."""
    h = ident.face_h
    u = np.clip(xs / reach, -1, 1)
    kind = ident.hair_fringe
    if kind == "bangs":
        line = -0.4 * h + 0.025 * np.sin(xs * 40)
    elif kind == "curtain":
        line = -0.8 * h + 0.5 * h * np.abs(u) ** 1.4
    elif kind == "side":
        v = (ident.part_side * u + 1) / 2
        line = -0.75 * h + 0.45 * h * v**1.6
    elif kind == "spiky":
        line = -0.52 * h + 0.09 * h * np.abs(((xs * 6) % 1.0) - 0.5) * 2
    else:  # slick: high forehead, hair combed back
        line = -0.74 * h + 0.12 * h * u**2
    return line


def _draw_fringe(sp: Sprite, ident: Identity, colour: RGB) -> None:
    h = ident.face_h
    rx = ident.face_w * ident.hair_volume
    ry = h * 1.02
    cy = -0.12 * h
    side_y = 0.1 * h if ident.hair_back in ("long", "wavy", "bob") else -0.12 * h
    if ident.hair_back == "buzz":
        side_y, rx = -0.35 * h, rx * 0.96
    xs = np.linspace(-rx * 0.985, rx * 0.985, 41)
    top = cy - ry * np.sqrt(np.clip(1 - (xs / rx) ** 2, 0, 1))
    line = _hairline(ident, xs, rx)
    # Near the temples the hairline falls to the side length of the cut.
    edge = np.clip((np.abs(xs) / rx - 0.72) / 0.26, 0, 1)
    line = line + (side_y - line) * edge * edge * (3 - 2 * edge)
    line = np.maximum(line, top)
    sp.polygon(np.concatenate([xs, xs[::-1]]), np.concatenate([top, line[::-1]]), colour)
    # A few lighter strands give the hair texture.
    strand = (*_shade(colour, 1.35), 70)
    for x0 in (-0.5, -0.15, 0.25, 0.55):
        x_start = x0 * rx
        y_start = cy - ry * math.sqrt(max(0.0, 1 - (x0 * 0.9) ** 2)) + 0.05
        y_end = float(_hairline(ident, np.array([x_start * 1.1]), rx)[0]) - 0.04
        if y_end > y_start + 0.05:
            sp.line(np.array([x_start, x_start * 1.1]), np.array([y_start, y_end]), strand, 0.025)


def _draw_eye(
    sp: Sprite, ident: Identity, look: Look, cx: float, cy: float, side: int, size: float
) -> None:
    w, h = ident.eye_w * size, ident.eye_h
    t = np.linspace(math.pi, 0, 15)
    ux, uy = w * np.cos(t), -h * np.sin(t) ** 0.85
    lx, ly = ux[::-1], 0.5 * h * np.sin(t[::-1]) ** 1.2
    angle = -ident.eye_tilt * side  # outer corner up
    ca, sa = math.cos(angle), math.sin(angle)

    def place(x, y):
        x = x * side
        return cx + x * ca - y * sa, cy + x * sa + y * ca

    lash = (28, 22, 22)
    if look.expression == "eye_smile":
        ax, ay = place(ux, 0.35 * h + uy * 0.6)
        sp.line(ax, ay, lash, 0.035)
        return
    ex, ey = place(np.concatenate([ux, lx]), np.concatenate([uy, ly]))
    pts = sp.points(ex, ey)
    x0, y0 = int(min(p[0] for p in pts)), int(min(p[1] for p in pts))
    x1, y1 = int(max(p[0] for p in pts)) + 2, int(max(p[1] for p in pts)) + 2
    eye_img = Image.new("RGB", (x1 - x0, y1 - y0), (244, 242, 238))
    eye_mask = Image.new("L", eye_img.size, 0)
    ImageDraw.Draw(eye_mask).polygon([(x - x0, y - y0) for x, y in pts], fill=255)
    draw = ImageDraw.Draw(eye_img)
    ix, iy = sp.to_px(cx + (look.gaze * w * 0.3), cy - 0.15 * h)
    r = 0.95 * h * sp.px
    draw.ellipse((ix - x0 - r, iy - y0 - r, ix - x0 + r, iy - y0 + r), fill=ident.iris)
    draw.ellipse(
        (ix - x0 - r / 2, iy - y0 - r / 2, ix - x0 + r / 2, iy - y0 + r / 2), fill=(12, 10, 10)
    )
    hl = r * 0.28
    draw.ellipse(
        (
            ix - x0 + r * 0.2 - hl,
            iy - y0 - r * 0.45 - hl,
            ix - x0 + r * 0.2 + hl,
            iy - y0 - r * 0.45 + hl,
        ),
        fill=(250, 250, 250),
    )
    sp.rgb.paste(eye_img, (x0, y0), eye_mask)
    top_x, top_y = place(ux, uy)
    sp.line(top_x, top_y, lash, 0.045 if ident.eyeliner else 0.03)
    if ident.eyeliner:
        wx, wy = place(np.array([w * 0.95, w * 1.3]), np.array([-0.1 * h, -0.55 * h]))
        sp.line(wx, wy, lash, 0.03)
    if ident.double_lid:
        cx2, cy2 = place(ux[2:-2] * 0.95, uy[2:-2] - 0.35 * h - 0.02)
        sp.line(cx2, cy2, (*_shade(ident.skin, 0.72), 255), 0.015)


def _draw_brow(
    sp: Sprite, ident: Identity, cx: float, cy: float, side: int, colour: RGB, size: float
) -> None:
    w = ident.eye_w * size
    u = np.linspace(0, 1, 12)
    xs = cx + side * (-1.05 * w + u * 2.35 * w)
    base = cy - ident.eye_h - ident.brow_gap
    ys = base - ident.brow_arch * 4 * u * (1 - u) * 1.6 - ident.brow_slope * (u - 0.5)
    thick = ident.brow_thick * (1.0 - 0.55 * u**1.5)
    sp.polygon(
        np.concatenate([xs, xs[::-1]]),
        np.concatenate([ys - thick / 2, (ys + thick / 2)[::-1]]),
        colour,
    )


def _draw_mouth(sp: Sprite, ident: Identity, look: Look, cx: float, cy: float) -> None:
    mw = ident.mouth_w
    xs = np.linspace(-mw, mw, 21)
    u = xs / mw
    lift = {"neutral": 0.0, "smile": 0.06, "open": 0.08, "eye_smile": 0.07}[look.expression]
    mid = cy - lift * u**2 + lift * 0.3
    upper = mid - ident.lip_upper * np.sqrt(np.clip(1 - u**2, 0, 1)) * (
        1 - 0.3 * np.exp(-((u / 0.14) ** 2))
    )
    gap = 0.09 * np.clip(1 - u**2, 0, 1) ** 0.8 if look.expression == "open" else 0 * u
    lower_top = mid + gap
    lower = lower_top + ident.lip_lower * np.clip(1 - u**2, 0, 1) ** 0.7
    lip = _mix(ident.lip_colour, ident.skin, 0.25 + 0.25 * look.lip_tint)
    if look.expression == "open":
        sp.polygon(
            np.concatenate([xs, xs[::-1]]), np.concatenate([mid, lower_top[::-1]]), (96, 34, 40)
        )
        teeth = mid + gap * 0.55
        sp.polygon(
            np.concatenate([xs * 0.85, xs[::-1] * 0.85]),
            np.concatenate([mid, teeth[::-1]]),
            (240, 236, 226),
        )
    sp.polygon(
        np.concatenate([xs, xs[::-1]]), np.concatenate([upper, mid[::-1]]), _shade(lip, 0.92)
    )
    sp.polygon(np.concatenate([xs, xs[::-1]]), np.concatenate([lower_top, lower[::-1]]), lip)
    sp.line(xs, mid, (*_shade(lip, 0.6), 255), 0.012)


def _draw_glasses(sp: Sprite, ident: Identity, centres: list[tuple[float, float, float]]) -> None:
    colour = (*ident.glasses_colour, 255)
    boxes = []
    for cx, cy, size in centres:
        hw, hh = ident.eye_w * size * 1.45, max(ident.eye_h * 2.4, 0.17)
        x0, y0 = sp.to_px(cx - hw, cy - hh * 0.9)
        x1, y1 = sp.to_px(cx + hw, cy + hh * 1.1)
        boxes.append((x0, y0, x1, y1))
        frame = {
            "fill": (210, 225, 240, 38),
            "outline": colour,
            "width": max(1, int(0.035 * sp.px)),
        }
        if ident.glasses == "round":
            sp.draw.ellipse((x0, y0, x1, y1), **frame)
        else:
            sp.draw.rounded_rectangle((x0, y0, x1, y1), radius=int((x1 - x0) * 0.18), **frame)
    (_, ay0, ax1, ay1), (bx0, _, _, by1) = sorted(boxes)
    mid_y = ay0 + (ay1 - ay0) * 0.35
    sp.draw.line([(ax1, mid_y), (bx0, mid_y)], fill=colour, width=max(1, int(0.03 * sp.px)))
