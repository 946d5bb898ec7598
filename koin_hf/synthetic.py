"""The embedded synthetic KoIn: a generated stand-in for the real photos, in the raw KoIn layout.

No labelled face photos can be downloaded here, so the product's own runs and every test use a
dataset drawn with Pillow. It is built to make results mean something:

* identity lives only in the face (face shape, skin tone, hair style and colour, eyes, brows,
  nose, mouth, moles, freckles, glasses, facial hair); everything else (background, clutter,
  other people, colour cast, lighting, blur, noise, position, scale, pose, image size) is drawn
  from a per-photo random stream that never sees the label;
* hard cases put masks, hats or both over the parts a model trained on normal photos relies on;
* group photos place the labelled person among 2-5 random, non-class people.

Every photo is a pure function of (seed, subset, label, index), so output bytes do not depend on
the order or the number of worker processes.
"""

from __future__ import annotations

import colorsys
import csv
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from koin_hf.errors import KoinError

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

# subset -> (folder in the raw KoIn layout, photo kind)
SUBSETS: dict[str, tuple[str, str]] = {
    "train": ("normal_cases/train", "normal"),
    "test": ("normal_cases/test", "normal"),
    "hard": ("hard_cases/test", "hard"),
    "group": ("Group_cases/test", "group"),
}
# Distinct integers keep the random streams of the four subsets apart.
_SUBSET_STREAM = {"train": 11, "test": 12, "hard": 13, "group": 14}
_IDENTITY_STREAM = 101
_NAME_STREAM = 102

PHONE_SIZE = (1080, 1350)

# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------

_SKIN_TONES: list[RGB] = [
    (255, 228, 206), (246, 214, 186), (240, 200, 168), (229, 187, 150),
    (217, 172, 134), (200, 152, 114), (181, 132, 96), (160, 112, 80),
]  # fmt: skip
# (colour, weight): mostly natural dark shades, with the dyed colours idols are known for.
_HAIR_COLOURS: list[tuple[RGB, float]] = [
    ((22, 20, 22), 4.0), ((48, 34, 28), 3.0), ((88, 60, 42), 2.0), ((136, 104, 78), 1.2),
    ((214, 182, 128), 1.0), ((226, 220, 206), 0.7), ((122, 36, 44), 0.8), ((192, 98, 52), 0.7),
    ((232, 150, 176), 0.7), ((66, 88, 156), 0.6), ((166, 166, 174), 0.6), ((108, 68, 132), 0.6),
]  # fmt: skip
_IRIS_COLOURS: list[RGB] = [(52, 34, 24), (70, 46, 30), (34, 26, 22), (98, 72, 48), (90, 100, 110)]
_LIP_COLOURS: list[RGB] = [
    (214, 112, 112), (196, 84, 96), (226, 132, 128), (184, 70, 74), (206, 120, 140), (170, 96, 90),
]  # fmt: skip
_MASK_COLOURS: list[RGB] = [
    (240, 240, 240), (172, 206, 230), (32, 32, 36), (150, 150, 156), (232, 196, 204), (222, 206, 180),
]  # fmt: skip
_GLASSES_COLOURS: list[RGB] = [(20, 20, 20), (186, 150, 70), (92, 56, 36), (150, 150, 160)]
# (back of the hair, fringe): cycled over classes so ten identities get ten different cuts.
HAIR_STYLES: list[tuple[str, str]] = [
    ("long", "bangs"), ("short", "side"), ("bob", "bangs"), ("wavy", "curtain"),
    ("short", "spiky"), ("bun", "curtain"), ("long", "slick"), ("buzz", "slick"),
    ("curly", "bangs"), ("bob", "side"), ("short", "slick"), ("long", "side"),
]  # fmt: skip

_FAMILY_NAMES = (
    "Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han", "Oh",
    "Seo", "Shin", "Kwon", "Hwang", "Ahn", "Song", "Yoo", "Hong", "Jeon", "Ko", "Moon", "Yang",
    "Son", "Bae", "Baek", "Heo", "Nam", "Noh",
)  # fmt: skip
_GIVEN_SYLLABLES = (
    "min", "ji", "seo", "hyun", "woo", "jin", "soo", "yeon", "eun", "ha", "joon", "young", "hye",
    "sung", "dong", "tae", "na", "ra", "bin", "hee", "kyung", "yoon", "jae", "ho", "seung", "won",
    "chan", "mi", "da", "ye", "so", "hoon", "gyu", "in",
)  # fmt: skip


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person recognisable, in face units.

    The face is an ellipse of half-width `face_w` and half-length `face_h`, centred at (0, 0)
    with y pointing down; every other length is in the same units.
    """

    face_w: float
    face_h: float
    jaw: float  # 1 = round jaw, smaller = narrower chin
    chin_power: float  # small = V-line (narrows early), large = square jaw
    skin: RGB
    hair_back: str
    hair_fringe: str
    hair_colour: RGB
    hair_volume: float
    part_side: int
    eye_w: float
    eye_h: float
    eye_gap: float
    eye_y: float
    eye_tilt: float
    iris: RGB
    double_lid: bool
    eyeliner: bool
    brow_gap: float
    brow_thick: float
    brow_arch: float
    brow_slope: float
    nose_len: float
    nose_w: float
    mouth_gap: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    lip_colour: RGB
    blush: int
    mole: tuple[float, float] | None
    freckles: tuple[tuple[float, float], ...]
    glasses: str | None
    glasses_colour: RGB
    facial_hair: str | None


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _shade(colour: Sequence[float], factor: float) -> RGB:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def _choice(rng: np.random.Generator, items: Sequence, weights: Sequence[float] | None = None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def random_identity(
    rng: np.random.Generator, hair_style: tuple[str, str] | None = None
) -> Identity:
    """Draw one person. Classes and background people ("distractors") come from this alike."""
    tone = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(tone)
    skin = _mix(_SKIN_TONES[low], _SKIN_TONES[min(low + 1, len(_SKIN_TONES) - 1)], tone - low)
    back, fringe = hair_style or _choice(rng, HAIR_STYLES)
    hair = _choice(rng, [c for c, _ in _HAIR_COLOURS], [w for _, w in _HAIR_COLOURS])
    face_w = rng.uniform(0.86, 1.04)
    eye_w = rng.uniform(0.17, 0.25)
    freckles: tuple[tuple[float, float], ...] = ()
    if rng.random() < 0.15:
        freckles = tuple(
            (float(rng.uniform(-0.6, 0.6)), float(rng.uniform(0.05, 0.35))) for _ in range(14)
        )
    mole = None
    if rng.random() < 0.45:
        mole = _choice(rng, [(-0.45, 0.25), (0.5, 0.45), (0.28, 0.62), (-0.2, 0.9), (0.55, -0.02)])
        mole = (mole[0] + float(rng.normal(0, 0.04)), mole[1] + float(rng.normal(0, 0.04)))
    return Identity(
        face_w=face_w,
        face_h=rng.uniform(1.22, 1.46),
        jaw=rng.uniform(0.5, 0.9),
        chin_power=rng.uniform(0.8, 3.0),
        skin=skin,
        hair_back=back,
        hair_fringe=fringe,
        hair_colour=hair,
        hair_volume=rng.uniform(1.03, 1.16),
        part_side=int(rng.choice([-1, 1])),
        eye_w=eye_w,
        eye_h=eye_w * rng.uniform(0.32, 0.55),
        eye_gap=rng.uniform(0.36, 0.46),
        eye_y=rng.uniform(-0.1, 0.04),
        eye_tilt=rng.uniform(-0.1, 0.22),
        iris=_choice(rng, _IRIS_COLOURS, [4, 3, 3, 1, 0.7]),
        double_lid=bool(rng.random() < 0.55),
        eyeliner=bool(rng.random() < 0.3),
        brow_gap=rng.uniform(0.2, 0.32),
        brow_thick=rng.uniform(0.04, 0.085),
        brow_arch=rng.uniform(0.0, 0.07),
        brow_slope=rng.uniform(-0.06, 0.08),
        nose_len=rng.uniform(0.34, 0.5),
        nose_w=rng.uniform(0.1, 0.19),
        mouth_gap=rng.uniform(0.2, 0.3),
        mouth_w=rng.uniform(0.24, 0.38),
        lip_upper=rng.uniform(0.035, 0.075),
        lip_lower=rng.uniform(0.05, 0.1),
        lip_colour=_choice(rng, _LIP_COLOURS),
        blush=int(rng.integers(0, 70)),
        mole=mole,
        freckles=freckles,
        glasses=_choice(rng, ["round", "square"]) if rng.random() < 0.22 else None,
        glasses_colour=_choice(rng, _GLASSES_COLOURS),
        facial_hair=_choice(rng, ["stubble", "moustache"]) if rng.random() < 0.15 else None,
    )


@lru_cache(maxsize=4096)
def class_identity(seed: int, label: int) -> Identity:
    """The person behind class `label` for a dataset seed (independent of the number of classes)."""
    styles = np.random.default_rng([seed, _IDENTITY_STREAM]).permutation(len(HAIR_STYLES))
    rng = np.random.default_rng([seed, _IDENTITY_STREAM, label])
    return random_identity(rng, HAIR_STYLES[int(styles[label % len(styles)])])


def class_names(num_classes: int, seed: int = 0) -> list[str]:
    """Unique made-up Korean-style romanised names, e.g. "Park Seo-yeon", one per class."""
    rng = np.random.default_rng([seed, _NAME_STREAM])
    names: list[str] = []
    while len(names) < num_classes:
        family = _choice(rng, _FAMILY_NAMES)
        first, second = _choice(rng, _GIVEN_SYLLABLES), _choice(rng, _GIVEN_SYLLABLES)
        if first == second or first == family.lower():
            continue
        name = f"{family} {first.capitalize()}-{second}"
        if name not in names:
            names.append(name)
    return names


# --------------------------------------------------------------------------------------------
# Drawing one person
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """How a person appears in one photo: pose, expression and what they wear."""

    yaw: float = 0.0  # -1..1, turns the features sideways
    expression: str = "neutral"  # neutral | smile | open | eye_smile
    gaze: float = 0.0
    glasses: bool = True
    clothes: RGB = (60, 60, 80)
    neckline: str = "round"
    earrings: RGB | None = None
    hair_tint: float = 0.0
    hair_length: float = 1.0
    shoulders: float = 1.0
    lip_tint: float = 0.0
    mask: RGB | None = None
    mask_style: str = "surgical"
    hat: str | None = None
    hat_colour: RGB = (30, 30, 30)


# Sprite extent in face units around the face centre: hair above, shoulders below.
_SPRITE_X = 2.5
_SPRITE_TOP = -2.3
_SPRITE_BOTTOM = 3.6


class _Sprite:
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


def _hair_cap(ident: Identity, cut_y: float, widen: float = 1.0):
    """The back of the hair: an ellipse around the skull, cut flat at height `cut_y`."""
    rx = ident.face_w * ident.hair_volume * widen
    ry = ident.face_h * 1.02
    xs, ys = _ellipse_points(0, -0.12 * ident.face_h, rx, ry, n=64)
    keep = ys <= cut_y
    return xs[keep], ys[keep], rx


def _draw_hair_back(sp: _Sprite, ident: Identity, colour: RGB, length: float) -> None:
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


def _draw_fringe(sp: _Sprite, ident: Identity, colour: RGB) -> None:
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
    sp: _Sprite, ident: Identity, look: Look, cx: float, cy: float, side: int, size: float
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
    sp: _Sprite, ident: Identity, cx: float, cy: float, side: int, colour: RGB, size: float
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


def _draw_mouth(sp: _Sprite, ident: Identity, look: Look, cx: float, cy: float) -> None:
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


def _draw_glasses(sp: _Sprite, ident: Identity, centres: list[tuple[float, float, float]]) -> None:
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


def _draw_mask(sp: _Sprite, ident: Identity, look: Look, nose_y: float, shift: float) -> None:
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


def _draw_hat(sp: _Sprite, ident: Identity, look: Look, edge_y: float, shift: float) -> None:
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


def render_person(
    ident: Identity, look: Look, px: float, bottom: float = _SPRITE_BOTTOM
) -> tuple[Image.Image, Image.Image]:
    """Draw a head-and-shoulders sprite; returns (rgb, mask) with the face centre at the sprite's
    `(_SPRITE_X * px, -_SPRITE_TOP * px)`; the torso reaches `bottom` face units down."""
    sp = _Sprite(px, bottom)
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


# --------------------------------------------------------------------------------------------
# Composing photos
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticPhoto:
    """One generated photo, where it goes in the raw layout, and (for tests) its face box."""

    subset: str
    label: int
    index: int
    relpath: str
    image: Image.Image
    face_box: Box  # the labelled person's face (forehead to chin) in image pixels


def _random_colour(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.1, 1.0)) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))


def random_look(rng: np.random.Generator, occlusion: str | None = None) -> Look:
    """Pose, expression, clothes and (for hard cases) a mask and/or a hat for one photo."""
    mask = hat = None
    if occlusion in ("mask", "both"):
        mask = _choice(rng, _MASK_COLOURS)
    if occlusion in ("hat", "both"):
        hat = _choice(rng, ["cap", "beanie", "bucket"])
    return Look(
        yaw=float(np.clip(rng.normal(0, 0.3), -0.8, 0.8)),
        expression=_choice(rng, ["neutral", "smile", "open", "eye_smile"], [4, 3, 2, 1]),
        gaze=float(rng.uniform(-1, 1)),
        glasses=bool(rng.random() < 0.8),
        clothes=_random_colour(rng, val=(0.1, 0.95)),
        neckline=_choice(rng, ["round", "v"]),
        earrings=_random_colour(rng, val=(0.6, 1.0)) if rng.random() < 0.3 else None,
        hair_tint=float(rng.normal(0, 0.06)),
        hair_length=float(rng.uniform(0.9, 1.1)),
        shoulders=float(rng.uniform(0.85, 1.1)),
        lip_tint=float(rng.random()),
        mask=mask,
        mask_style=_choice(rng, ["surgical", "kf94"]),
        hat=hat,
        hat_colour=_random_colour(rng, val=(0.15, 0.95)),
    )


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
) -> Box:
    """Draw a person with the face `face_height` pixels tall centred at `centre`; return its box.

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
    return (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A scene drawn at a quarter of the size and enlarged: out of focus, like a portrait's."""
    width, height = size
    low = (max(8, width // 4), max(8, height // 4))
    kind = _choice(rng, ["gradient", "stage", "backdrop", "outdoor", "press", "room"])
    a, b = _random_colour(rng), _random_colour(rng)
    ys = np.linspace(0, 1, low[1])[:, None, None]
    xs = np.linspace(0, 1, low[0])[None, :, None]
    angle = rng.uniform(0, 2 * math.pi)
    t = np.clip(0.5 + (xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle), 0, 1)
    if kind == "stage":
        a, b = _shade(a, 0.25), _shade(b, 0.1)
    elif kind == "backdrop":
        b = _shade(a, rng.uniform(0.4, 0.8))
        t = np.clip(np.sqrt((xs - 0.5) ** 2 + (ys - 0.45) ** 2) * 1.6, 0, 1)
    elif kind == "outdoor":
        a, b = (
            _random_colour(rng, (0.1, 0.5), (0.7, 1.0)),
            _random_colour(rng, (0.2, 0.7), (0.2, 0.6)),
        )
        horizon = np.clip((ys - rng.uniform(0.3, 0.7)) * 6 + 0.5, 0, 1)
        t = np.broadcast_to(horizon, (low[1], low[0], 1))
    arr = np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img, "RGBA")
    lw, lh = low
    if kind == "stage":
        for _ in range(int(rng.integers(2, 6))):
            top = rng.uniform(0, lw)
            bottom = rng.uniform(-lw * 0.3, lw * 1.3)
            spread = rng.uniform(0.05, 0.25) * lw
            draw.polygon(
                [(top, -2), (bottom - spread, lh), (bottom + spread, lh)],
                fill=(*_random_colour(rng, (0.3, 1), (0.7, 1)), int(rng.integers(50, 130))),
            )
        for _ in range(int(rng.integers(3, 12))):
            x, y, r = rng.uniform(0, lw), rng.uniform(0, lh * 0.4), rng.uniform(0.5, 3)
            draw.ellipse(
                (x - r, y - r, x + r, y + r), fill=(*_random_colour(rng, (0, 0.6), (0.9, 1)), 220)
            )
    elif kind == "outdoor":
        for _ in range(int(rng.integers(3, 10))):
            x, y = rng.uniform(0, lw), rng.uniform(0, lh * 0.8)
            r = rng.uniform(0.05, 0.25) * lw
            draw.ellipse(
                (x - r, y - r, x + r, y + r),
                fill=(*_random_colour(rng, (0.3, 0.8), (0.2, 0.6)), 255),
            )
    elif kind == "press":
        logo, step = _random_colour(rng), rng.uniform(0.12, 0.3) * lw
        for row, y in enumerate(np.arange(step / 2, lh, step)):
            for x in np.arange((row % 2) * step / 2, lw, step):
                draw.rectangle((x, y, x + step * 0.45, y + step * 0.18), fill=(*logo, 255))
    elif kind == "room":
        floor = rng.uniform(0.55, 0.85) * lh
        draw.rectangle((0, floor, lw, lh), fill=(*_random_colour(rng, val=(0.2, 0.7)), 255))
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.uniform(0, lw), rng.uniform(0, floor * 0.7)
            draw.rectangle(
                (x0, y0, x0 + rng.uniform(0.1, 0.4) * lw, y0 + rng.uniform(0.1, 0.4) * lh),
                fill=(*_random_colour(rng), 255),
            )
    # Blurring at the low resolution is cheap and hides the staircase edges of the shapes.
    return img.filter(ImageFilter.GaussianBlur(0.8)).resize(size, Image.BILINEAR)


def _clutter(rng: np.random.Generator, canvas: Image.Image) -> None:
    """Foreground-ish props: balloons, banners, light sticks, microphone stands."""
    draw = ImageDraw.Draw(canvas, "RGBA")
    width, height = canvas.size
    for _ in range(int(rng.integers(0, 6))):
        colour = (*_random_colour(rng), int(rng.integers(120, 256)))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.02, 0.1) * width
        shape = int(rng.integers(3))
        if shape == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif shape == 1:
            draw.rectangle((x - r, y - r * 0.4, x + r * 1.5, y + r * 0.4), fill=colour)
        else:
            draw.line(
                [(x, y), (x + rng.uniform(-r, r) * 2, height)],
                fill=colour,
                width=max(1, int(r * 0.2)),
            )


def _finish(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Lighting, stage-light colour, contrast, blur and sensor noise, all per photo."""
    width, height = image.size
    arr = np.asarray(image, dtype=np.float32) / 255.0
    cast = rng.uniform(0.85, 1.12, 3).astype(np.float32)
    cast *= rng.uniform(0.8, 1.15) / cast.mean()
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0, 0.6) * (xs * math.cos(angle) + ys * math.sin(angle))
    arr = arr * light[:, :, None] * cast
    if rng.random() < 0.45:  # a coloured stage light falling on part of the picture
        gx, gy, sigma = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.15, 0.5)
        glow = np.exp(-((xs - gx) ** 2) / sigma**2) * np.exp(-((ys - gy) ** 2) / sigma**2)
        tint = np.asarray(_random_colour(rng, (0.5, 1), (0.8, 1)), np.float32) / 255.0
        arr = arr + glow[:, :, None] * tint * rng.uniform(0.1, 0.4)
    contrast = rng.uniform(0.75, 1.15)
    arr = (arr - 0.5) * contrast + 0.5
    if rng.random() < 0.6:
        arr = arr + rng.standard_normal(arr.shape, dtype=np.float32) * rng.uniform(0.004, 0.025)
    out = Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6) * height / 320))
    return out


def parse_image_size(spec: str) -> str | tuple[int, int]:
    """`small` (varied, about 256x320), `phone` (1080x1350) or an exact `WxH`."""
    if spec in ("small", "phone"):
        return spec
    parts = spec.lower().split("x")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        width, height = int(parts[0]), int(parts[1])
        if 32 <= width <= 8192 and 32 <= height <= 8192:
            return (width, height)
    raise KoinError(
        f"--image-size must be 'small', 'phone' or WxH between 32 and 8192, not {spec!r}"
    )


def _photo_size(
    rng: np.random.Generator, spec: str | tuple[int, int], group: bool
) -> tuple[int, int]:
    if spec == "phone":
        return PHONE_SIZE
    if isinstance(spec, tuple):
        return spec
    if group:  # group shots are landscape
        width = int(rng.integers(320, 401))
        return width, int(width / rng.uniform(1.25, 1.5))
    width = int(rng.integers(224, 289))
    return width, int(width * rng.uniform(1.15, 1.35))


def _portrait(rng, ident, look, size) -> tuple[Image.Image, Box]:
    width, height = size
    canvas = _background(rng, size)
    _clutter(rng, canvas)
    face = rng.uniform(0.24, 0.5) * height
    if rng.random() < 0.35:  # backup dancers or passers-by behind the subject
        for _ in range(int(rng.integers(1, 4))):
            paste_person(
                canvas,
                random_identity(rng),
                random_look(rng),
                face * rng.uniform(0.45, 0.85),
                (rng.uniform(0, width), rng.uniform(0.15, 0.6) * height),
                float(rng.normal(0, 8)),
                blur=rng.uniform(0.5, 2.5) * height / 320,
            )
    centre = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.55) * height)
    if rng.random() < 0.12:  # partly out of frame, like a careless crop
        if rng.random() < 0.5:
            centre = (
                _choice(rng, [rng.uniform(0.08, 0.18), rng.uniform(0.82, 0.92)]) * width,
                centre[1],
            )
        else:
            face, centre = face * 1.3, (centre[0], rng.uniform(0.12, 0.25) * height)
    roll = float(np.clip(rng.normal(0, 8), -25, 25))
    box = paste_person(canvas, ident, look, face, centre, roll)
    return canvas, box


def _group(rng, ident, size) -> tuple[Image.Image, Box]:
    width, height = size
    canvas = _background(rng, size)
    _clutter(rng, canvas)
    people = int(rng.integers(3, 7))  # the labelled person and 2-5 others
    slot = int(rng.integers(people))
    face = min(height * rng.uniform(0.22, 0.34), width / people * rng.uniform(0.7, 0.95))
    xs = (np.arange(people) + 0.5 + rng.uniform(-0.15, 0.15, people)) * width / people
    box: Box = (0, 0, 1, 1)
    for i in rng.permutation(people):
        person = ident if i == slot else random_identity(rng)
        centre = (float(xs[i]), rng.uniform(0.32, 0.5) * height)
        placed = paste_person(
            canvas,
            person,
            random_look(rng),
            face * rng.uniform(0.9, 1.1),
            centre,
            float(np.clip(rng.normal(0, 7), -20, 20)),
        )
        if i == slot:
            box = placed
    return canvas, box


@dataclass(frozen=True)
class PhotoJob:
    """The recipe for one photo: a pure function of these fields."""

    seed: int
    subset: str
    label: int
    index: int
    image_size: str | tuple[int, int] = "small"

    @property
    def relpath(self) -> str:
        return f"{SUBSETS[self.subset][0]}/{self.label:04d}/img_{self.index:03d}.jpg"


def render_photo(job: PhotoJob) -> SyntheticPhoto:
    """Render one photo. Only `ident` depends on the label; every other draw comes from `rng`."""
    ident = class_identity(job.seed, job.label)
    rng = np.random.default_rng([job.seed, _SUBSET_STREAM[job.subset], job.label, job.index])
    kind = SUBSETS[job.subset][1]
    size = _photo_size(rng, job.image_size, group=kind == "group")
    if kind == "group":
        canvas, box = _group(rng, ident, size)
    else:
        occlusion = (
            _choice(rng, ["mask", "hat", "both"], [0.35, 0.35, 0.3]) if kind == "hard" else None
        )
        canvas, box = _portrait(rng, ident, random_look(rng, occlusion), size)
    return SyntheticPhoto(job.subset, job.label, job.index, job.relpath, _finish(rng, canvas), box)


def photo_jobs(
    num_classes: int,
    seed: int,
    counts: dict[str, int],
    image_size: str | tuple[int, int] = "small",
) -> list[PhotoJob]:
    """Every photo of a dataset, subset by subset and class by class."""
    return [
        PhotoJob(seed, subset, label, index, image_size)
        for subset, count in counts.items()
        for label in range(num_classes)
        for index in range(count)
    ]


def iter_photos(
    num_classes: int = 10,
    seed: int = 0,
    counts: dict[str, int] | None = None,
    image_size: str | tuple[int, int] = "small",
) -> Iterator[SyntheticPhoto]:
    """Generate photos in memory (the same pixels `generate_synthetic_koin` writes)."""
    counts = counts if counts is not None else dict(DEFAULT_COUNTS)
    for job in photo_jobs(num_classes, seed, counts, image_size):
        yield render_photo(job)


# --------------------------------------------------------------------------------------------
# Writing the raw layout
# --------------------------------------------------------------------------------------------

DEFAULT_COUNTS: dict[str, int] = {"train": 60, "test": 20, "hard": 20, "group": 10}


def _write_photo(job: PhotoJob, out_dir: Path, quality: int) -> None:
    render_photo(job).image.save(out_dir / job.relpath, "JPEG", quality=quality)


def _default_workers() -> int:
    # Threads, not processes: Pillow and numpy release the GIL for resizing, rotating, blurring
    # and JPEG encoding, and threads need no `if __name__ == "__main__"` guard in user scripts.
    return max(1, min(os.cpu_count() or 1, 4))


def generate_synthetic_koin(
    out_dir: str | os.PathLike,
    *,
    num_classes: int = 10,
    seed: int = 0,
    train_per_class: int = DEFAULT_COUNTS["train"],
    test_per_class: int = DEFAULT_COUNTS["test"],
    hard_per_class: int = DEFAULT_COUNTS["hard"],
    group_per_class: int = DEFAULT_COUNTS["group"],
    image_size: str | tuple[int, int] = "small",
    quality: int = 90,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a synthetic KoIn in the raw layout to `out_dir` (new or empty) and return it.

    Every photo is rendered from its own random stream, so the same arguments give the same
    bytes whatever `workers` (threads; default: up to 4) is.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KoinError(f"output folder {out} already exists and is not empty; pick a new folder")
    if not 2 <= num_classes <= 9999:
        raise KoinError(f"--num-classes must be between 2 and 9999, not {num_classes}")
    counts = {
        "train": train_per_class,
        "test": test_per_class,
        "hard": hard_per_class,
        "group": group_per_class,
    }
    for subset, count in counts.items():
        if count < 0 or (subset == "train" and count < 1):
            raise KoinError(
                f"--{subset}-per-class must be at least {int(subset == 'train')}, not {count}"
            )
    if workers is not None and workers < 1:
        raise KoinError(f"--workers must be at least 1, not {workers}")
    if not 1 <= quality <= 100:
        raise KoinError(f"--quality must be between 1 and 100, not {quality}")
    size = parse_image_size(image_size) if isinstance(image_size, str) else image_size
    counts = {subset: count for subset, count in counts.items() if count > 0}
    jobs = photo_jobs(num_classes, seed, counts, size)

    out.mkdir(parents=True, exist_ok=True)
    for subset in counts:
        for label in range(num_classes):
            (out / SUBSETS[subset][0] / f"{label:04d}").mkdir(parents=True, exist_ok=True)
    with open(out / "classes.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "name"])
        for label, name in enumerate(class_names(num_classes, seed)):
            writer.writerow([f"{label:04d}", name])

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(jobs), desc="koin synth", unit="photo", disable=not progress, mininterval=0.5
    )
    with ThreadPoolExecutor(workers or _default_workers()) as pool:
        for _ in pool.map(lambda job: _write_photo(job, out, quality), jobs):
            bar.update()
    bar.close()
    return out


# --------------------------------------------------------------------------------------------
# Contact sheet (docs/synthetic_contact_sheet.png)
# --------------------------------------------------------------------------------------------


def contact_sheet(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    num_identities: int = 5,
    normal_per_row: int = 4,
    hard_per_row: int = 3,
    thumb_height: int = 150,
) -> Path:
    """Save a PNG grid: one row per identity with normal, hard and one group photo."""
    from PIL import ImageFont

    names = class_names(num_identities, seed)
    font = ImageFont.load_default(size=max(10, thumb_height // 11))
    rows = []
    for label in range(num_identities):
        jobs = [PhotoJob(seed, "train", label, i) for i in range(normal_per_row)]
        jobs += [PhotoJob(seed, "hard", label, i) for i in range(hard_per_row)]
        jobs.append(PhotoJob(seed, "group", label, 0))
        thumbs = []
        for job in jobs:
            photo = render_photo(job)
            image = photo.image.copy()
            if job.subset == "group":  # show who the label is
                ImageDraw.Draw(image).rectangle(photo.face_box, outline=(255, 230, 0), width=2)
            scale = thumb_height / image.height
            thumbs.append(image.resize((round(image.width * scale), thumb_height), Image.LANCZOS))
        rows.append((names[label], thumbs))
    gap, label_h = 4, thumb_height // 7
    width = max(sum(t.width for t in thumbs) + gap * (len(thumbs) + 1) for _, thumbs in rows)
    height = len(rows) * (thumb_height + label_h + gap) + gap
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for name, thumbs in rows:
        draw.text(
            (gap, y),
            f"{name}: normal x{normal_per_row} | hard x{hard_per_row} | group",
            fill=(20, 20, 20),
            font=font,
        )
        x = gap
        for thumb in thumbs:
            sheet.paste(thumb, (x, y + label_h))
            x += thumb.width + gap
        y += thumb_height + label_h + gap
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep the committed PNG small; it is for eyes, not for training.
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Synthetic KoIn helpers (see `koin synth`).")
    parser.add_argument(
        "--contact-sheet", metavar="PNG", required=True, help="write a contact sheet"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-identities", type=int, default=5)
    args = parser.parse_args(argv)
    print(contact_sheet(args.contact_sheet, seed=args.seed, num_identities=args.num_identities))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
