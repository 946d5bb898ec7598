"""Top-k accuracy for Trainer and for `koin evaluate`, through one `evaluate` module.

The metric lives in `koin_hf/evaluation/top_k_accuracy/` as a standard `evaluate` module, so
it loads offline from its path (`evaluate.load("accuracy")` would need the Hub) and can be pushed
to the Hub unchanged. Its per-example functions are also imported here directly, for per-class
breakdowns that the module's averaged output cannot give.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import evaluate
    from transformers import EvalPrediction

# `evaluate` is imported only where the Trainer metric is built: importing it costs ~0.6 s on
# 2 cores, and `koin probe`, `koin predict` and the scorers need only the per-example credit.

TOP_K_METRIC_PATH: Path = Path(__file__).resolve().parent / "top_k_accuracy"
DEFAULT_KS: tuple[int, ...] = (1, 3)


def load_top_k_metric() -> evaluate.EvaluationModule:
    """Load the top-k accuracy metric from its folder inside the package; needs no network."""
    import evaluate

    return evaluate.load(str(TOP_K_METRIC_PATH))


@cache
def _metric_functions() -> ModuleType:
    # The module file is the single source of the tie rule; import it as a plain module so the
    # per-example credit used for per-class tables is the very code behind the averaged metric.
    path = TOP_K_METRIC_PATH / "top_k_accuracy.py"
    spec = importlib.util.spec_from_file_location("koin_hf._top_k_accuracy_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def top_k_credit(scores: np.ndarray, references: np.ndarray, k: int) -> np.ndarray:
    """Per-example credit in [0, 1] that the true class is in the top k (ties shared fairly)."""
    return _metric_functions().top_k_credit(scores, references, k)


def check_ks(ks: Sequence[int], num_classes: int) -> list[int]:
    """Validate k values against a class count; raise ValueError for k > num_classes or k < 1."""
    return _metric_functions().normalize_k(list(ks), num_classes)


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """The keys the metric returns, e.g. ["top1_accuracy", "top3_accuracy"]."""
    return [f"top{k}_accuracy" for k in sorted(set(ks))]


def make_compute_metrics(
    ks: Sequence[int] = DEFAULT_KS, num_labels: int | None = None
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build Trainer's `compute_metrics`: {"top1_accuracy": .., "top3_accuracy": ..} from logits.

    Trainer prefixes the keys per eval set (`eval_hard_top3_accuracy`). Pass `num_labels` to fail
    now, before training, when a k exceeds the number of classes instead of at the first eval.
    """
    ks = list(ks)
    if num_labels is not None:
        check_ks(ks, num_labels)
    metric = load_top_k_metric()

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        logits = eval_pred.predictions
        # Models that return more than logits (hidden states, ...) give a tuple; logits come first.
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return metric.compute(predictions=np.asarray(logits), references=eval_pred.label_ids, k=ks)

    return compute_metrics
