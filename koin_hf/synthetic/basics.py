"""The types and tiny helpers every other module of the synthetic KoIn uses.

`_choice` and `_random_colour` are the only ways the generator picks from lists and draws
colours, so every module consumes the random streams in the same way.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _shade(colour: Sequence[float], factor: float) -> RGB:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def _choice(rng: np.random.Generator, items: Sequence, weights: Sequence[float] | None = None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def _random_colour(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.1, 1.0)) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))
