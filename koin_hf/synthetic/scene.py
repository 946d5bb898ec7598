"""Composing photos: backgrounds, clutter, lighting and the portrait and group layouts.

`render_photo(PhotoJob)` is the pure function behind every photo: only the class identity
depends on the label; background, clutter, other people, pose, size and lighting are drawn from
the photo's own stream `(seed, subset, label, index)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from koin_hf.synthetic.basics import Box, _choice, _random_colour, _shade
from koin_hf.synthetic.identity import class_identity, random_identity, random_look
from koin_hf.synthetic.person import PlacedFace, paste_person

# subset -> (folder in the raw KoIn layout, photo kind)
SUBSETS: dict[str, tuple[str, str]] = {
    "train": ("normal_cases/train", "normal"),
    "test": ("normal_cases/test", "normal"),
    "hard": ("hard_cases/test", "hard"),
    "group": ("Group_cases/test", "group"),
    # People never in train (labels from num_classes up): open-set evaluation's impostors.
    "unknown": ("unknown_cases/test", "normal"),
}
# Distinct integers keep the random streams of the four subsets apart.
_SUBSET_STREAM = {"train": 11, "test": 12, "hard": 13, "group": 14, "unknown": 15}
# `--image-size phone`: every photo the size of a typical phone portrait.
PHONE_SIZE = (1080, 1350)


@dataclass(frozen=True)
class SyntheticPhoto:
    """One generated photo, where it goes in the raw layout, and (for tests) its face box."""

    subset: str
    label: int
    index: int
    relpath: str
    image: Image.Image
    face_box: Box  # the labelled person's face (forehead to chin) in image pixels
    # Every face drawn (background people too), in drawing order, and which one is labelled.
    faces: tuple[PlacedFace, ...] = ()
    labelled: int = 0

    def face_record(self) -> dict:
        """One line of koin synth's faces.jsonl: where every face is, and the labelled one."""

        def point(xy: tuple[float, float]) -> list[float]:
            return [round(xy[0], 2), round(xy[1], 2)]

        return {
            "image_id": self.relpath,
            "size": list(self.image.size),
            "labelled": self.labelled,
            "faces": [
                {
                    "box": list(face.box),
                    "left_eye": point(face.left_eye),
                    "right_eye": point(face.right_eye),
                }
                for face in self.faces
            ],
        }


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


def _portrait(rng, ident, look, size, placed: list[PlacedFace]) -> tuple[Image.Image, int]:
    """The portrait and the index in `placed` of the labelled person's face."""
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
                placed=placed,
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
    paste_person(canvas, ident, look, face, centre, roll, placed=placed)
    return canvas, len(placed) - 1


def _group(rng, ident, size, placed: list[PlacedFace]) -> tuple[Image.Image, int]:
    """The group photo and the index in `placed` of the labelled person's face."""
    width, height = size
    canvas = _background(rng, size)
    _clutter(rng, canvas)
    people = int(rng.integers(3, 7))  # the labelled person and 2-5 others
    slot = int(rng.integers(people))
    face = min(height * rng.uniform(0.22, 0.34), width / people * rng.uniform(0.7, 0.95))
    xs = (np.arange(people) + 0.5 + rng.uniform(-0.15, 0.15, people)) * width / people
    labelled = 0
    for i in rng.permutation(people):
        person = ident if i == slot else random_identity(rng)
        centre = (float(xs[i]), rng.uniform(0.32, 0.5) * height)
        paste_person(
            canvas,
            person,
            random_look(rng),
            face * rng.uniform(0.9, 1.1),
            centre,
            float(np.clip(rng.normal(0, 7), -20, 20)),
            placed=placed,
        )
        if i == slot:
            labelled = len(placed) - 1
    return canvas, labelled


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
    placed: list[PlacedFace] = []
    if kind == "group":
        canvas, labelled = _group(rng, ident, size, placed)
    else:
        occlusion = (
            _choice(rng, ["mask", "hat", "both"], [0.35, 0.35, 0.3]) if kind == "hard" else None
        )
        canvas, labelled = _portrait(rng, ident, random_look(rng, occlusion), size, placed)
    image = _finish(rng, canvas)
    box = placed[labelled].box
    return SyntheticPhoto(
        job.subset, job.label, job.index, job.relpath, image, box, tuple(placed), labelled
    )


def photo_jobs(
    num_classes: int,
    seed: int,
    counts: dict[str, int],
    image_size: str | tuple[int, int] = "small",
    unknown_classes: int = 0,
) -> list[PhotoJob]:
    """Every photo of a dataset, subset by subset and class by class.

    `counts["unknown"]` photos are drawn for each of `unknown_classes` further people (labels
    num_classes .. num_classes + unknown_classes - 1), who appear in no other subset.
    """
    return [
        PhotoJob(seed, subset, label, index, image_size)
        for subset, count in counts.items()
        for label in (
            range(num_classes, num_classes + unknown_classes)
            if subset == "unknown"
            else range(num_classes)
        )
        for index in range(count)
    ]


def photo_condition(job: PhotoJob) -> str:
    """What a photo shows, without rendering it: normal, mask, hat, mask+hat or group.

    Replays the photo's first random draws exactly as `render_photo` makes them.
    """
    kind = SUBSETS[job.subset][1]
    if kind != "hard":
        return kind
    rng = np.random.default_rng([job.seed, _SUBSET_STREAM[job.subset], job.label, job.index])
    _photo_size(rng, job.image_size, group=False)
    occlusion = _choice(rng, ["mask", "hat", "both"], [0.35, 0.35, 0.3])
    return "mask+hat" if occlusion == "both" else occlusion
