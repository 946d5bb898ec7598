"""The dataset-level API: `generate_synthetic_koin` writes the raw KoIn layout to disk and
`iter_photos` yields the same photos in memory; plus the checks on user input (a `KoinError`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from koin_hf.errors import KoinError
from koin_hf.hub.provenance import write_synthetic_marker
from koin_hf.synthetic.identity import class_names
from koin_hf.synthetic.scene import PhotoJob, SyntheticPhoto, photo_jobs, render_photo

# Beside classes.csv: one line per photo, {"image_id", "size", "labelled", "faces": [{"box",
# "left_eye", "right_eye"}]} (koin_hf.faces.detection reads it for the `recorded` detector).
FACES_RECORD_FILE = "faces.jsonl"
DEFAULT_COUNTS: dict[str, int] = {"train": 60, "test": 20, "hard": 20, "group": 10}
# The names of the people of unknown_cases/ (id,name), beside classes.csv.
UNKNOWN_CLASSES_FILE = "unknown_classes.csv"


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
        f"--image_size must be 'small', 'phone' or WxH between 32 and 8192, not {spec!r}"
    )


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


def _write_photo(job: PhotoJob, out_dir: Path, quality: int) -> dict:
    photo = render_photo(job)
    photo.image.save(out_dir / job.relpath, "JPEG", quality=quality)
    return photo.face_record()


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
    unknown_classes: int = 0,
    unknown_per_class: int = DEFAULT_COUNTS["test"],
    image_size: str | tuple[int, int] = "small",
    quality: int = 90,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a synthetic KoIn in the raw layout to `out_dir` (new or empty) and return it.

    Every photo is rendered from its own random stream, so the same arguments give the same
    bytes whatever `workers` (threads; default: up to 4) is. `unknown_classes` further people,
    never in train, get `unknown_per_class` photos each in `unknown_cases/test/<id>/` (ids after
    the known ones; their names in `unknown_classes.csv`): open-set evaluation's impostors. The
    known part is byte-identical with or without them.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KoinError(f"output folder {out} already exists and is not empty; pick a new folder")
    if not 2 <= num_classes <= 9999:
        raise KoinError(f"--num_classes must be between 2 and 9999, not {num_classes}")
    counts = {
        "train": train_per_class,
        "test": test_per_class,
        "hard": hard_per_class,
        "group": group_per_class,
    }
    for subset, count in counts.items():
        if count < 0 or (subset == "train" and count < 1):
            raise KoinError(
                f"--{subset}_per_class must be at least {int(subset == 'train')}, not {count}"
            )
    if unknown_classes < 0 or (unknown_classes and unknown_per_class < 1):
        raise KoinError(
            "--unknown_classes must be at least 0 and --unknown_per_class at least 1, not "
            f"{unknown_classes} and {unknown_per_class}"
        )
    if num_classes + unknown_classes > 9999:
        raise KoinError("--num_classes plus --unknown_classes must be at most 9999")
    if workers is not None and workers < 1:
        raise KoinError(f"--workers must be at least 1, not {workers}")
    if not 1 <= quality <= 100:
        raise KoinError(f"--quality must be between 1 and 100, not {quality}")
    size = parse_image_size(image_size) if isinstance(image_size, str) else image_size
    counts = {subset: count for subset, count in counts.items() if count > 0}
    if unknown_classes:
        counts["unknown"] = unknown_per_class
    jobs = photo_jobs(num_classes, seed, counts, size, unknown_classes)

    out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        (out / job.relpath).parent.mkdir(parents=True, exist_ok=True)
    with open(out / "classes.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "name"])
        for label, name in enumerate(class_names(num_classes, seed)):
            writer.writerow([f"{label:04d}", name])
    if unknown_classes:
        names = class_names(num_classes + unknown_classes, seed)[num_classes:]
        with open(out / UNKNOWN_CLASSES_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id", "name"])
            for offset, name in enumerate(names):
                writer.writerow([f"{num_classes + offset:04d}", name])
    # Says "generated, no real person" to koin prepare and so to every card made from this folder.
    # The seed and image size also let koin evaluate replay each photo's condition.
    marker = {"seed": seed, "num_classes": num_classes, "counts": counts}
    if unknown_classes:
        marker["unknown_classes"] = unknown_classes
    marker["image_size"] = list(size) if isinstance(size, tuple) else size
    write_synthetic_marker(out, **marker)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(jobs), desc="koin synth", unit="photo", disable=not progress, mininterval=0.5
    )
    # Where every face is (box, eyes, which one is labelled): the truth the face path is tested
    # against. One JSON object per photo, in photo order.
    with (
        ThreadPoolExecutor(workers or _default_workers()) as pool,
        open(out / FACES_RECORD_FILE, "w", encoding="utf-8") as records,
    ):
        for record in pool.map(lambda job: _write_photo(job, out, quality), jobs):
            records.write(json.dumps(record) + "\n")
            bar.update()
    bar.close()
    return out
