"""Top-k accuracy from scores, as an `evaluate` metric module.

`evaluate`'s own `accuracy` takes integer predictions, so it cannot say whether the right class was
among the best three (evaluate #612 says no top-k metric is coming). This module takes the scores.

Load it from its folder, which works offline:

    metric = evaluate.load("path/to/top_k_accuracy")
    metric.compute(predictions=logits, references=labels, k=[1, 3])
    # {"top1_accuracy": 0.5, "top3_accuracy": 0.75}

Keep one import per line: evaluate's import scanner misreads `import a, b`.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy: the share of examples whose true class is among the k highest-scoring classes.
Predictions are scores (logits, probabilities or similarities; any monotonic transform gives the
same result), one row of n_classes floats per example; references are class indices.

Ties are shared fairly: an example whose true class has `higher` classes scoring strictly above
it and `tied` classes (itself included) scoring exactly the same gets credit
clip((k - higher) / tied, 0, 1), which is the chance that it lands in the top k when ties are broken
uniformly at random. Without ties this is the usual 0/1 hit. A model that outputs constant scores
therefore scores k / n_classes (chance), neither 100% (counting every tie as a hit) nor 0%.
NaN scores rank below every number.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`, n x n_classes): class scores per example.
    references (`list` of `int`): the true class index per example, in [0, n_classes).
    k (`int` or `list` of `int`, defaults to [1, 3]): the k values to report; each must be at
        least 1 and at most n_classes.
Returns:
    `top{k}_accuracy` (`float` in [0, 1]) for every requested k.
Examples:
    >>> metric = evaluate.load("koin_hf/evaluation/top_k_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 1], k=[1, 2])
    {'top1_accuracy': 0.0, 'top2_accuracy': 1.0}
"""

_CITATION = """
@article{koin2023,
  title={New Benchmarks for Asian Facial Recognition Tasks: Face Classification with Large
         Foundation Models},
  journal={arXiv preprint arXiv:2310.09756},
  year={2023}
}
"""

DEFAULT_K = (1, 3)


def normalize_k(k, num_classes: int) -> list[int]:
    """Return k as a sorted list of distinct ints, or raise ValueError naming the bad value."""
    ks = [k] if isinstance(k, (int, np.integer)) else list(k if k is not None else DEFAULT_K)
    if not ks:
        raise ValueError("k must name at least one value, e.g. k=[1, 3].")
    for value in ks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"k values must be positive integers, got {value!r}.")
        if value > num_classes:
            raise ValueError(
                f"k={value} exceeds the number of classes ({num_classes}): top-{value} accuracy "
                f"is undefined; use k values up to {num_classes}."
            )
    return sorted({int(value) for value in ks})


def top_k_credit(scores, references, k: int) -> np.ndarray:
    """Per-example top-k credit in [0, 1] under the fair tie rule described above."""
    scores = np.asarray(scores, dtype=np.float64)
    references = np.asarray(references)
    if scores.ndim != 2:
        raise ValueError(
            f"predictions must be 2-D (n x n_classes scores), got shape {scores.shape}."
        )
    if references.shape != (scores.shape[0],):
        raise ValueError(
            f"references must hold one class index per prediction row: got {references.shape[0]} "
            f"references for {scores.shape[0]} rows."
        )
    if scores.shape[0] == 0:
        return np.zeros(0)
    if not np.issubdtype(references.dtype, np.integer):
        raise ValueError(f"references must be integer class indices, got dtype {references.dtype}.")
    num_classes = scores.shape[1]
    if references.min() < 0 or references.max() >= num_classes:
        bad = references[(references < 0) | (references >= num_classes)][0]
        raise ValueError(f"reference {bad} is outside [0, {num_classes}).")
    normalize_k(k, num_classes)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    reference_scores = scores[np.arange(scores.shape[0]), references][:, None]
    higher = (scores > reference_scores).sum(axis=1)
    tied = (scores == reference_scores).sum(axis=1)  # includes the reference itself, so >= 1
    return np.clip((k - higher) / tied, 0.0, 1.0)


def top_k_accuracies(scores, references, k=DEFAULT_K) -> dict[str, float]:
    """{"top1_accuracy": .., "top3_accuracy": ..} for scores (n x C) and int references (n)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(
            f"predictions must be 2-D (n x n_classes scores), got shape {scores.shape}."
        )
    ks = normalize_k(k, scores.shape[1])
    if scores.shape[0] == 0:
        raise ValueError("top-k accuracy of zero examples is undefined.")
    return {
        f"top{value}_accuracy": float(top_k_credit(scores, references, value).mean())
        for value in ks
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    """Top-k accuracy from per-class scores, with ties shared fairly."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2310.09756"],
        )

    def _compute(self, predictions, references, k=DEFAULT_K) -> dict[str, float]:
        # Rows arrive as Python lists (evaluate's numpy format takes scalar features only).
        return top_k_accuracies(
            np.asarray(predictions, dtype=np.float64), np.asarray(references), k
        )
