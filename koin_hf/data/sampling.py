"""Stratified, seeded sampling: the carved validation set, few-shot draws, capped eval sets.

All work on any dataset with a ClassLabel column. Validation is carved before few-shot sampling,
so the validation images are never among the shots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import datasets
import numpy as np

from koin_hf.errors import KoinError


def _indices_by_class(labels: Sequence[int], num_classes: int) -> list[np.ndarray]:
    labels = np.asarray(labels)
    return [np.flatnonzero(labels == c) for c in range(num_classes)]


def stratified_split(
    dataset: datasets.Dataset, fraction: float, seed: int, label_column: str = "label"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split off `fraction` of each class (at least one image where a class has two or more)."""
    if not 0 < fraction < 1:
        raise KoinError(f"--train_val_split must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    names = dataset.features[label_column].names
    keep, held_out = [], []
    for indices in _indices_by_class(dataset[label_column], len(names)):
        indices = rng.permutation(indices)
        n_held = (
            min(len(indices) - 1, max(1, math.floor(len(indices) * fraction)))
            if len(indices) > 1
            else 0
        )
        held_out.extend(indices[:n_held].tolist())
        keep.extend(indices[n_held:].tolist())
    return dataset.select(sorted(keep)), dataset.select(sorted(held_out))


def sample_few_shot(
    dataset: datasets.Dataset, shots_per_class: int, seed: int, label_column: str = "label"
) -> datasets.Dataset:
    """Exactly `shots_per_class` images of every class, drawn with a seeded generator.

    Unlike `max_train_samples` in the transformers example (N images in total), this is the
    paper's protocol: N per class.
    """
    if shots_per_class < 1:
        raise KoinError(f"--shots_per_class must be at least 1, got {shots_per_class}")
    rng = np.random.default_rng(seed)
    names = dataset.features[label_column].names
    chosen = []
    for class_index, indices in enumerate(_indices_by_class(dataset[label_column], len(names))):
        if len(indices) < shots_per_class:
            raise KoinError(
                f"--shots_per_class {shots_per_class} is more than class {names[class_index]!r} has "
                f"({len(indices)} training images after the validation split)"
            )
        chosen.extend(rng.choice(indices, size=shots_per_class, replace=False).tolist())
    return dataset.select(sorted(chosen))


def stratified_sample(
    dataset: datasets.Dataset, size: int, seed: int, label_column: str = "label"
) -> datasets.Dataset:
    """At most `size` rows with the classes as even as they can be, drawn with a seeded generator.

    `--max_eval_samples`: the first N rows of a set sorted by class would be one or two classes.
    Every class gets `size // classes` rows (fewer where a class has fewer, the rest going to
    the classes that have more); the leftover rows go to classes chosen by the seed. Rows keep
    their dataset order. A dataset of `size` rows or fewer is returned whole.
    """
    if size < 1:
        raise KoinError(f"--max_eval_samples must be at least 1, got {size}")
    if len(dataset) <= size:
        return dataset
    rng = np.random.default_rng(seed)
    names = dataset.features[label_column].names
    by_class = [
        rng.permutation(indices)
        for indices in _indices_by_class(dataset[label_column], len(names))
        if len(indices)
    ]
    quota = [0] * len(by_class)
    remaining = size
    while remaining:  # deal rows round by round to the classes that still have some
        open_classes = [c for c, rows in enumerate(by_class) if len(rows) > quota[c]]
        if not open_classes:  # rows without a valid label: nothing more to deal
            break
        if remaining < len(open_classes):
            open_classes = sorted(rng.choice(open_classes, size=remaining, replace=False))
        for c in open_classes:
            quota[c] += 1
        remaining -= len(open_classes)
    chosen = [int(i) for c, rows in enumerate(by_class) for i in rows[: quota[c]]]
    return dataset.select(sorted(chosen))
