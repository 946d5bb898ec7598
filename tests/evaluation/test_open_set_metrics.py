"""Open-set metrics checked against brute-force definitions on random scores."""

from __future__ import annotations

import numpy as np
import pytest

from koin_hf.errors import KoinError
from koin_hf.evaluation.open_set import (
    OpenSetSettings,
    apply_open_set,
    auroc,
    fit_temperature,
    held_out_class_scores,
    open_set_accuracy,
    reliability,
    softmax,
    tar_at_far,
    threshold_at_far,
)


def test_auroc_is_the_pairwise_win_rate_with_ties_half():
    rng = np.random.default_rng(0)
    known = np.round(rng.normal(1, 1, 40), 1)  # rounding makes ties
    unknown = np.round(rng.normal(0, 1, 30), 1)
    wins = (known[:, None] > unknown[None, :]).mean() + 0.5 * (
        known[:, None] == unknown[None, :]
    ).mean()
    assert auroc(known, unknown) == pytest.approx(wins)
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auroc(np.array([]), unknown) is None


@pytest.mark.parametrize("far", [0.0, 0.01, 0.1, 0.25])
def test_threshold_at_far_accepts_at_most_far_of_impostors_and_is_the_lowest(far):
    rng = np.random.default_rng(1)
    impostors = rng.random(200)
    t = threshold_at_far(impostors, far)
    assert np.mean(impostors > t) <= far + 1e-12
    lower = np.sort(impostors)[np.sort(impostors) < t]
    if len(lower):  # the next lower candidate would accept too many
        assert np.mean(impostors > lower[-1]) > far


def test_tar_dir_and_open_set_accuracy():
    known = np.array([0.9, 0.8, 0.3, 0.95])
    correct = np.array([True, False, True, True])
    unknown = np.array([0.1, 0.2, 0.5, 0.4])
    result = tar_at_far(known, correct, unknown, 0.25)  # one of four impostors may pass
    assert result["threshold"] == 0.4
    assert result["far_measured"] == 0.25
    assert result["tar"] == 0.75 and result["dir"] == 0.5
    acc = open_set_accuracy(known, correct, unknown, 0.45)
    # known: 0.9 ok, 0.8 wrong name, 0.3 rejected, 0.95 ok -> 2; unknown: 3 of 4 rejected.
    assert acc["accuracy"] == pytest.approx(5 / 8)


def test_ece_matches_its_definition():
    rng = np.random.default_rng(2)
    conf = rng.random(500)
    correct = rng.random(500) < conf**2
    result = reliability(conf, correct, bins=10)
    bins = np.minimum((conf * 10).astype(int), 9)
    expected = sum(
        abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
        for b in range(10)
        if (bins == b).any()
    )
    assert result["ece"] == pytest.approx(expected, abs=0.02)  # bin edges: right-closed
    assert sum(b["n"] for b in result["bins"]) == 500
    perfectly = reliability(np.full(100, 0.75), np.arange(100) < 75)
    assert perfectly["ece"] == pytest.approx(0.0)


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, size=(4000, 5))
    true_t = 2.5
    p = softmax(logits, true_t)
    labels = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.1)


def test_no_validation_mistakes_leave_the_temperature_at_one():
    # Separable validation: the likelihood rises without end as T falls; the grid would return
    # its 0.05 bound and make every later score overconfident.
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 1, size=(50, 4))
    labels = logits.argmax(axis=1)
    assert fit_temperature(logits, labels) == 1.0
    labels[0] = (labels[0] + 1) % 4  # one mistake: a finite optimum exists again
    assert 0.05 <= fit_temperature(logits, labels) < 20


def test_held_out_class_scores_renormalise_over_the_other_classes():
    logits = np.array([[3.0, 1.0, 0.0]])
    score = held_out_class_scores(logits, np.array([0]), 1.0)
    assert score[0] == pytest.approx(np.exp(1) / (np.exp(1) + 1))


def test_apply_open_set_says_unknown_below_the_threshold_only():
    ranked = [{"label": "Kim", "score": 0.6}, {"label": "Lee", "score": 0.3}]
    settings = OpenSetSettings(threshold=0.7, score="msp")
    out = apply_open_set(ranked, settings)
    assert out[0]["label"] == "unknown" and out[1:] == ranked
    assert apply_open_set(ranked, OpenSetSettings(threshold=0.5, score="msp")) == ranked
    assert apply_open_set(ranked, None) == ranked
    # A prototype-score model decides on the image's own score, not pipeline()'s.
    prototype = OpenSetSettings(threshold=0.4)
    assert apply_open_set(ranked, prototype, 0.3)[0]["label"] == "unknown"
    assert apply_open_set(ranked, prototype, 0.5) == ranked
    with pytest.raises(KoinError, match="pass the image's score"):
        apply_open_set(ranked, prototype)
    config = {"koin_open_set": {"threshold": 0.7, "score": "msp", "temperature": 1.3}}
    assert OpenSetSettings.from_config(config).threshold == 0.7
    assert OpenSetSettings.from_config({}) is None
