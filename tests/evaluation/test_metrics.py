"""The top-k `evaluate` module: checked against computations written independently here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from transformers import EvalPrediction

from koin_hf.evaluation.metrics import (
    TOP_K_METRIC_PATH,
    check_ks,
    load_top_k_metric,
    make_compute_metrics,
    top_k_credit,
)


@pytest.fixture(scope="module")
def metric():
    return load_top_k_metric()


def brute_force_top_k(scores: np.ndarray, references: np.ndarray, k: int) -> float:
    """Top-k accuracy by enumerating every tie-breaking order of each row (small rows only).

    With distinct scores there is one order and this is the plain "is the label in the k best"
    check; with ties it averages over all orders, i.e. the expected hit under random tie-breaking.
    """
    hits = []
    for row, label in zip(scores, references, strict=True):
        # Group classes by score; within a group every permutation is equally likely.
        values = sorted(set(row.tolist()), reverse=True)
        groups = [[c for c in range(len(row)) if row[c] == v] for v in values]
        outcomes = []
        for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
            ranking = [c for group in orders for c in group]
            outcomes.append(label in ranking[:k])
        hits.append(np.mean(outcomes))
    return float(np.mean(hits))


def test_metric_loads_from_the_package_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (TOP_K_METRIC_PATH / "top_k_accuracy.py").is_file()
    module = load_top_k_metric()
    assert module.name == "top_k_accuracy"
    assert module.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], k=[1]) == {
        "top1_accuracy": 0.5
    }


def test_random_logits_match_an_argsort_computation(metric):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 12)).astype(np.float32)
    references = rng.integers(0, 12, size=300)
    result = metric.compute(predictions=scores, references=references, k=[1, 3, 5])
    for k in (1, 3, 5):
        best = np.argsort(-scores, axis=1)[:, :k]
        expected = np.mean([label in row for row, label in zip(best, references, strict=True)])
        assert result[f"top{k}_accuracy"] == pytest.approx(expected, abs=1e-12)
    # The metric is not trivially 0 or 1 here: the test could fail.
    assert 0.05 < result["top1_accuracy"] < result["top3_accuracy"] < result["top5_accuracy"] < 1


def test_default_k_is_1_and_3(metric):
    result = metric.compute(predictions=[[3.0, 2.0, 1.0, 0.0]] * 2, references=[0, 2])
    assert result == {"top1_accuracy": 0.5, "top3_accuracy": 1.0}


def test_ties_get_the_expected_hit_under_random_tie_breaking(metric):
    rng = np.random.default_rng(1)
    # Integer scores from a small range: most rows have ties, some around the reference.
    scores = rng.integers(0, 3, size=(60, 5)).astype(np.float32)
    references = rng.integers(0, 5, size=60)
    result = metric.compute(predictions=scores, references=references, k=[1, 2, 3, 5])
    for k in (1, 2, 3, 5):
        assert result[f"top{k}_accuracy"] == pytest.approx(
            brute_force_top_k(scores, references, k), abs=1e-9
        )


def test_tie_rule_on_hand_made_rows():
    # Reference 0 tied with one other class at the top: half a top-1 hit, a full top-2 hit.
    scores = np.array([[1.0, 1.0, 0.0, 0.0]])
    assert top_k_credit(scores, np.array([0]), 1).tolist() == [0.5]
    assert top_k_credit(scores, np.array([0]), 2).tolist() == [1.0]
    # Reference 2 tied with 3 below two higher classes: top-3 gives half credit.
    assert top_k_credit(scores, np.array([2]), 3).tolist() == [0.5]
    # A collapsed model (constant scores) gets chance, k / n_classes: not 100%, not 0%.
    constant = np.zeros((8, 4))
    labels = np.arange(8) % 4
    assert top_k_credit(constant, labels, 1).mean() == pytest.approx(0.25)
    assert top_k_credit(constant, labels, 3).mean() == pytest.approx(0.75)


def test_nan_scores_rank_last():
    scores = np.array([[np.nan, 0.5, 0.1], [0.2, np.nan, np.nan]])
    assert top_k_credit(scores, np.array([0, 0]), 1).tolist() == [0.0, 1.0]
    assert top_k_credit(scores, np.array([0, 1]), 2).tolist() == [0.0, 0.5]


def test_k_larger_than_the_number_of_classes_is_a_clear_error(metric):
    with pytest.raises(ValueError, match=r"k=3 exceeds the number of classes \(2\)"):
        metric.compute(predictions=[[0.1, 0.9]], references=[1], k=[1, 3])
    with pytest.raises(ValueError, match="positive integers"):
        metric.compute(predictions=[[0.1, 0.9]], references=[1], k=[0])
    with pytest.raises(ValueError, match="outside"):
        metric.compute(predictions=[[0.1, 0.9]], references=[2], k=[1])


def test_compute_metrics_for_trainer():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=50)
    compute_metrics = make_compute_metrics(num_labels=6)
    # Models that return extra outputs give Trainer a tuple; the logits come first.
    prediction = EvalPrediction(predictions=(logits, np.zeros((50, 2))), label_ids=labels)
    result = compute_metrics(prediction)
    assert set(result) == {"top1_accuracy", "top3_accuracy"}
    assert result["top1_accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    top3 = np.argsort(-logits, axis=1)[:, :3]
    assert result["top3_accuracy"] == pytest.approx(np.mean((top3 == labels[:, None]).any(1)))


def test_compute_metrics_fails_before_training_when_k_exceeds_labels():
    with pytest.raises(ValueError, match="exceeds the number of classes"):
        make_compute_metrics(ks=(1, 3), num_labels=2)
    assert check_ks([3, 1, 3], 5) == [1, 3]
