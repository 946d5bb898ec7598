"""Stratified, seeded sampling: the validation carve, few-shot draws and capped eval sets."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest

from koin_hf.data.sampling import sample_few_shot, stratified_sample, stratified_split
from koin_hf.errors import KoinError


def _sorted_by_class(per_class: dict[int, int]) -> datasets.Dataset:
    """Rows grouped by class, as a prepared test split is: the first rows are all one class."""
    labels = [label for label, count in per_class.items() for _ in range(count)]
    names = [f"person {i}" for i in range(max(per_class) + 1)]
    return datasets.Dataset.from_dict(
        {"row": list(range(len(labels))), "label": labels},
        features=datasets.Features(
            {"row": datasets.Value("int64"), "label": datasets.ClassLabel(names=names)}
        ),
    )


def test_a_capped_eval_set_has_every_class_evenly_and_depends_only_on_the_seed():
    data = _sorted_by_class({c: 5 for c in range(10)})
    sample = stratified_sample(data, 20, seed=3)
    assert Counter(sample["label"]) == {c: 2 for c in range(10)}
    assert sample["row"] == sorted(sample["row"])  # dataset order is kept
    assert stratified_sample(data, 20, seed=3)["row"] == sample["row"]
    assert stratified_sample(data, 20, seed=4)["row"] != sample["row"]


def test_leftover_rows_go_to_seeded_classes_and_small_classes_give_way():
    data = _sorted_by_class({0: 1, 1: 10, 2: 10, 3: 10})
    sample = stratified_sample(data, 13, seed=0)
    counts = Counter(sample["label"])
    assert counts[0] == 1 and sum(counts.values()) == 13  # class 0 has only one row
    assert sorted(counts[c] for c in (1, 2, 3)) == [4, 4, 4]
    odd = Counter(stratified_sample(data, 6, seed=1)["label"])
    assert sum(odd.values()) == 6 and max(odd.values()) - min(odd.values()) <= 1


def test_a_set_no_larger_than_the_cap_is_kept_whole():
    data = _sorted_by_class({0: 2, 1: 2})
    assert stratified_sample(data, 4, seed=0) is data
    with pytest.raises(KoinError, match="--max_eval_samples must be at least 1, got 0"):
        stratified_sample(data, 0, seed=0)


def test_validation_and_few_shot_are_stratified_and_disjoint():
    data = _sorted_by_class({c: 10 for c in range(3)})
    train, validation = stratified_split(data, 0.2, seed=0)
    assert Counter(validation["label"]) == {0: 2, 1: 2, 2: 2}
    shots = sample_few_shot(train, 3, seed=0)
    assert Counter(shots["label"]) == {0: 3, 1: 3, 2: 3}
    assert not set(shots["row"]) & set(validation["row"])
