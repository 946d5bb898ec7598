"""Who a synthetic person is (`Identity`) and how they appear in one photo (`Look`).

An `Identity` holds everything that makes a person recognisable and is drawn once per class from
`(seed, label)`; a `Look` (pose, expression, clothes, mask, hat) is drawn per photo from the
photo's own stream, so nothing but the face carries the label. Class names live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from koin_hf.synthetic.basics import RGB, _choice, _mix, _random_colour

_IDENTITY_STREAM = 101
_NAME_STREAM = 102

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
