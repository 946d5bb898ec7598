"""Open-set recognition: scores, AUROC, TAR at a FAR, ECE, temperature, threshold, "unknown".

A closed-set classifier always names one of its people. Open-set recognition adds a rejection
rule: a score below a threshold means "unknown".

- **Scores** (higher = more likely an enrolled person):
  `prototype_cosine` (the default for rejection): the largest cosine similarity between the
  image's embedding and the class prototypes, both centred on the mean training embedding
  (prototype = mean training embedding of the class; stored in the model folder as
  `open_set.safetensors`, and an enrolled person's photos give theirs);
  `msp`, the maximum softmax probability (the score `pipeline()` shows);
  `max_logit`; `head_cosine`, the largest cosine between the embedding and a head row.
- **Calibration**: one temperature T, fitted by minimising the negative log-likelihood on the
  validation split (carved from train, never a test set). It is folded into the head
  (W/T, b/T), so that every consumer, plain `pipeline()` included, reports calibrated scores.
- **Threshold** for a target false-accept rate: fitted on impostor scores. Without
  "known unknowns" (photos of people outside the model), each validation image is scored as an
  impostor with its own class taken out (its prototype, or its softmax entry): the score the
  model would give that photo if its person were not enrolled. Photos of known unknowns, when
  given, are added to the impostors.
- **Storage**: `config.json` gets `koin_open_set` = {"score", "threshold", "msp_threshold",
  "temperature", "target_far", ...}; `apply_open_set` (used by `koin predict`) answers
  "unknown" at or below the threshold. `msp_threshold` is the same rule on `pipeline()`'s own
  top score, for users without koin-hf (a weaker separation, see docs/OPEN_SET.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from koin_hf.errors import KoinError

UNKNOWN_LABEL = "unknown"
CONFIG_KEY = "koin_open_set"
FARS: tuple[float, ...] = (0.01, 0.001)
ECE_BINS = 15
SCORES = ("prototype_cosine", "msp", "max_logit", "head_cosine")
PROTOTYPES_FILE = "open_set.safetensors"


# ---------------------------------------------------------------------------------------------
# Scores


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


@dataclass
class Prototypes:
    """Centred, unit-length class prototypes (rows in the model's label order) and the centre."""

    mean: np.ndarray  # (dim,)
    rows: np.ndarray  # (n_labels, dim)

    @classmethod
    def from_embeddings(
        cls, features: np.ndarray, references: np.ndarray, num_labels: int
    ) -> Prototypes:
        """Class means of (training) embeddings; `references` index the model's labels."""
        mean = features.mean(axis=0)
        rows = np.zeros((num_labels, features.shape[1]))
        for label in range(num_labels):
            mask = references == label
            if mask.any():
                rows[label] = features[mask].mean(axis=0) - mean
        return cls(mean.astype(np.float32), _unit(rows).astype(np.float32))

    def similarities(self, features: np.ndarray) -> np.ndarray:
        """(n, n_labels) cosine similarities of the centred embeddings with the prototypes."""
        return _unit(np.asarray(features, np.float64) - self.mean) @ self.rows.T.astype(np.float64)

    def scores(self, features: np.ndarray) -> np.ndarray:
        return self.similarities(features).max(axis=1)

    def save(self, model_dir: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(model_dir) / PROTOTYPES_FILE
        save_file({"mean": self.mean, "prototypes": self.rows}, str(path))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> Prototypes | None:
        from safetensors.numpy import load_file

        path = Path(model_dir) / PROTOTYPES_FILE
        if not path.is_file():
            return None
        tensors = load_file(str(path))
        return cls(tensors["mean"], tensors["prototypes"])


def open_set_scores(
    logits: np.ndarray,
    features: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    prototypes: Prototypes | None = None,
) -> dict[str, np.ndarray]:
    """{score name: (n,) scores} for every score the inputs allow."""
    scores = {}
    if features is not None and prototypes is not None:
        scores["prototype_cosine"] = prototypes.scores(features)
    scores["msp"] = softmax(logits).max(axis=1)
    scores["max_logit"] = np.asarray(logits, np.float64).max(axis=1)
    if features is not None and weight is not None:
        scores["head_cosine"] = (_unit(features) @ _unit(weight).T).max(axis=1)
    return scores


def held_out_class_scores(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """MSP of each image with its own class removed: an impostor score from a known person."""
    masked = np.asarray(logits, np.float64).copy()
    masked[np.arange(len(labels)), labels] = -np.inf
    return softmax(masked, temperature).max(axis=1)


def held_out_prototype_scores(similarities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Max prototype cosine of each image with its own class's prototype taken out."""
    masked = np.asarray(similarities, np.float64).copy()
    masked[np.arange(len(labels)), labels] = -np.inf
    return masked.max(axis=1)


# ---------------------------------------------------------------------------------------------
# Metrics


def auroc(known: np.ndarray, unknown: np.ndarray) -> float | None:
    """P(score of a known image > score of an unknown one), ties counting half (Mann-Whitney)."""
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if len(known) == 0 or len(unknown) == 0:
        return None
    both = np.concatenate([known, unknown])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both), np.float64)
    sorted_scores = both[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[: len(known)].sum()
    u = rank_sum - len(known) * (len(known) + 1) / 2.0
    return float(u / (len(known) * len(unknown)))


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest threshold t such that at most `far` of the impostors score strictly above t.

    With n impostors, a FAR below 1/n cannot be resolved: t is then the highest impostor score
    (no impostor accepted), and the metrics say how many impostors the FAR rests on.
    """
    scores = np.sort(np.asarray(impostor_scores, np.float64))[::-1]
    if len(scores) == 0:
        raise KoinError("no impostor scores to set a threshold from.")
    allowed = int(math.floor(far * len(scores) + 1e-9))
    return float(scores[min(allowed, len(scores) - 1)])


def tar_at_far(
    known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray, far: float
) -> dict:
    """At the threshold where `far` of unknown images are accepted: how many known images are.

    `tar`: known images accepted (score above the threshold); `dir`: accepted AND named
    correctly (the open-set "detection and identification rate").
    """
    threshold = threshold_at_far(unknown_scores, far)
    accepted = np.asarray(known_scores) > threshold
    return {
        "threshold": threshold,
        "far_measured": float(np.mean(np.asarray(unknown_scores) > threshold)),
        "tar": float(accepted.mean()) if len(accepted) else None,
        "dir": float((accepted & np.asarray(known_correct, bool)).mean())
        if len(accepted)
        else None,
        "resolvable": far * len(unknown_scores) >= 1,
    }


def open_set_accuracy(
    known_scores: np.ndarray,
    known_correct: np.ndarray,
    unknown_scores: np.ndarray,
    threshold: float,
) -> dict:
    """Right answers over known and unknown images: a known one accepted and named correctly,
    an unknown one rejected."""
    known_ok = (np.asarray(known_scores) > threshold) & np.asarray(known_correct, bool)
    unknown_ok = np.asarray(unknown_scores) <= threshold
    total = len(known_ok) + len(unknown_ok)
    return {
        "threshold": float(threshold),
        "accuracy": float((known_ok.sum() + unknown_ok.sum()) / total) if total else None,
        "known_accepted_correct": float(known_ok.mean()) if len(known_ok) else None,
        "unknown_rejected": float(unknown_ok.mean()) if len(unknown_ok) else None,
    }


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error (equal-width bins of the top-1 confidence) and the bins."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += abs(acc - conf) * count / len(confidence)
        else:
            acc = conf = None
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": count,
                      "accuracy": acc, "confidence": conf})  # fmt: skip
    return {"ece": float(ece) if len(confidence) else None, "bins": table}


# ---------------------------------------------------------------------------------------------
# Fitting


# Why `fit_temperature` keeps 1.0 when validation has no mistakes (koin calibrate prints it).
NO_MISTAKES_NOTE = (
    "every validation image is named correctly, so the likelihood keeps rising as the "
    "temperature falls: there is no temperature to fit, and it stays 1.0 (sharpening to the "
    "search bound would make every score overconfident on harder photos)"
)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the mean negative log-likelihood of `labels` (log-grid search
    over [0.05, 20], then a finer grid around the best: deterministic, no optimiser to tune).

    1.0 when every top-1 is right (`NO_MISTAKES_NOTE`): the likelihood then has no finite
    optimum. Measured on a face model with 100% validation top-1: the fit hit the 0.05 bound
    and the hard-faces ECE went from 0.13 to 0.34.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        raise KoinError("no validation images to fit a temperature on.")
    if np.all(logits.argmax(axis=1) == labels):
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))

    grid = np.linspace(math.log(0.05), math.log(20.0), 121)
    best = min(grid, key=nll)
    step = grid[1] - grid[0]
    fine = np.linspace(best - step, best + step, 41)
    return float(math.exp(min(fine, key=nll)))


@dataclass
class OpenSetSettings:
    """What `koin calibrate` stores under config.json's `koin_open_set`."""

    threshold: float
    score: str = "prototype_cosine"
    msp_threshold: float | None = None  # the same FAR on pipeline()'s top score
    temperature: float = 1.0  # folded into the head: pipeline() scores are already calibrated
    temperature_folded: bool = True
    target_far: float | None = None
    fitted_on: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config) -> OpenSetSettings | None:
        """From a loaded PretrainedConfig or a config.json dict; None when not calibrated."""
        raw = (
            config.get(CONFIG_KEY)
            if isinstance(config, dict)
            else getattr(config, CONFIG_KEY, None)
        )
        if not raw:
            return None
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        if "threshold" not in known:
            return None
        return cls(**known)

    @classmethod
    def read(cls, model_dir: str | Path) -> OpenSetSettings | None:
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            return None
        return cls.from_config(json.loads(path.read_text(encoding="utf-8")))

    def to_dict(self) -> dict:
        return asdict(self)


def apply_open_set(
    ranked: Sequence[dict], settings: OpenSetSettings | None, score: float | None = None
) -> list[dict]:
    """`pipeline()`'s ranked {"label", "score"} for one image, with "unknown" first when the
    image's open-set score is at or below the model's threshold. The one rule `koin predict`
    uses (and `koin recognize` is meant to reuse).

    `score` is the image's `settings.score` (e.g. its max prototype cosine, from
    `Prototypes.scores`); for an `msp` model it defaults to the top softmax score of `ranked`.
    The unknown entry carries the score and the threshold; the ranked names follow it, so a
    caller still sees who the model thought it was.
    """
    ranked = list(ranked)
    if settings is None or not ranked:
        return ranked
    if score is None:
        if settings.score != "msp":
            raise KoinError(
                f"the model rejects unknown people on the {settings.score!r} score: pass the "
                "image's score (koin_hf.evaluation.open_set.Prototypes.scores)."
            )
        score = float(ranked[0]["score"])
    if score > settings.threshold:
        return ranked
    entry = {"label": UNKNOWN_LABEL, "score": float(score), "threshold": settings.threshold}
    return [entry, *ranked]


def split_unknown(ranked: Sequence[dict]) -> tuple[dict | None, list[dict]]:
    """(the "unknown" entry `apply_open_set` put first, or None; the ranked names after it)."""
    ranked = list(ranked)
    if ranked and "threshold" in ranked[0]:
        return ranked[0], ranked[1:]
    return None, ranked


@dataclass
class OpenSetRule:
    """A calibrated model's "unknown" rule, loaded once: its settings and, for the prototype
    score, its prototypes. `koin predict`, `koin recognize` and `koin demo` all apply it here."""

    settings: OpenSetSettings
    prototypes: Prototypes | None = None

    @classmethod
    def for_model(cls, model: str | Path, config) -> OpenSetRule | None:
        """The rule stored by `koin calibrate` in `config` (a loaded PretrainedConfig or a
        config.json dict) for the model folder `model`; None when the model is not calibrated."""
        settings = OpenSetSettings.from_config(config)
        if settings is None:
            return None
        if settings.score == "msp":
            return cls(settings)
        if settings.score != "prototype_cosine":
            raise KoinError(
                f"{model}: config.json's {CONFIG_KEY} has score {settings.score!r}; koin-hf "
                "rejects on prototype_cosine or msp (run koin calibrate again)."
            )
        prototypes = Prototypes.load(model) if Path(str(model)).is_dir() else None
        if prototypes is None:
            raise KoinError(
                f"{model} rejects unknown people by prototype but has no {PROTOTYPES_FILE}: run "
                "koin calibrate again (or pass --closed_set)."
            )
        return cls(settings, prototypes)

    @property
    def needs_embeddings(self) -> bool:
        """Whether `apply` needs each image's embedding (the head's input), not only names."""
        return self.prototypes is not None

    def apply(
        self, ranked: Sequence[Sequence[dict]], embeddings: np.ndarray | None = None
    ) -> list[list[dict]]:
        """Each image's ranked names, with "unknown" first where its score is at or below the
        threshold (`apply_open_set`). `embeddings`: (n, dim), required for the prototype score."""
        if self.prototypes is None:
            return [apply_open_set(one, self.settings) for one in ranked]
        if embeddings is None:
            raise KoinError("the prototype rule needs each image's embedding.")
        scores = self.prototypes.scores(embeddings)
        return [
            apply_open_set(one, self.settings, float(score))
            for one, score in zip(ranked, scores, strict=True)
        ]
