"""What a training run sees: train, the carved validation split, and the (capped) test sets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rawkoin import write_classes_csv, write_image

from koin_hf.data.prepare import prepare_koin
from koin_hf.training.arguments import parse_arguments
from koin_hf.training.splits import load_splits

CLASSES = 10


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory) -> Path:
    """A prepared KoIn of 10 classes: 20 train, 5 normal-test and 3 hard-test images each."""
    root = tmp_path_factory.mktemp("ten")
    ids = [f"{c:04d}" for c in range(CLASSES)]
    for split, count in (
        ("normal_cases/train", 20),
        ("normal_cases/test", 5),
        ("hard_cases/test", 3),
    ):
        for c, class_id in enumerate(ids):
            for i in range(count):
                write_image(root / "raw" / split / class_id / f"img_{i}.jpg", c, size=(16, 16))
    write_classes_csv(root / "raw", ids=ids, names=[f"person {c}" for c in range(CLASSES)])
    prepare_koin(root / "raw", root / "prepared", image_size=0, verbose=False)
    return root / "prepared"


def _splits(dataset: Path, *extra: str):
    argv = ["--dataset_name", str(dataset), "--output_dir", "unused", *extra]
    _, data_args, training_args = parse_arguments(argv)
    return load_splits(data_args, training_args)


def test_max_eval_samples_caps_every_eval_set_stratified_and_seeded(ten_classes):
    _, _, _, full = _splits(ten_classes)
    assert {name: len(data) for name, data in full.items()} == {
        "validation": 30,  # 15% of 20 per class
        "normal": 50,
        "hard": 30,
    }
    _, _, train, capped = _splits(ten_classes, "--max_eval_samples", "20", "--seed", "1")
    assert len(train) == 170  # training is never capped
    for name, data in capped.items():
        assert len(data) == 20, name
        assert Counter(data["label"]) == {c: 2 for c in range(CLASSES)}, name
    _, _, _, again = _splits(ten_classes, "--max_eval_samples", "20", "--seed", "1")
    _, _, _, other = _splits(ten_classes, "--max_eval_samples", "20", "--seed", "2")
    for name in capped:
        assert again[name]["image_id"] == capped[name]["image_id"], name
    assert other["normal"]["image_id"] != capped["normal"]["image_id"]
