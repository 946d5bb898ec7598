"""`koin evaluate`: score a model on the KoIn test sets, top-1/top-3 per config, robustness drops.

`evaluate_model` is the library entry point; train.py's end-of-run table is checked against it.
Scoring is `koin_hf.evaluation.scoring`; the files it writes are `report` (report.md, predictions
CSVs) and `plots` (PNGs).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from koin_hf.data.default_dataset import ensure_default_dataset
from koin_hf.data.images import pixel_budget
from koin_hf.data.loading import load_test_sets
from koin_hf.dataset_script.koin import CONFIG_NAMES
from koin_hf.errors import KoinError
from koin_hf.evaluation.metrics import (
    DEFAULT_KS,
    check_ks,
    load_top_k_metric,
    metric_names,
    top_k_credit,
)
from koin_hf.evaluation.report import display_location, write_predictions_csv, write_report
from koin_hf.evaluation.scoring import ImageScorer, ScoredConfig, normalize_name, score_config
from koin_hf.run_record import RunRecord

logger = logging.getLogger(__name__)

ROBUSTNESS_SHIFTS: tuple[tuple[str, str], ...] = (("normal", "hard"), ("normal", "group"))
TIE_RULE = (
    "ties shared fairly: credit = clip((k - #higher) / #tied incl. the true class, 0, 1), "
    "the expected hit under random tie-breaking"
)

# ---------------------------------------------------------------------------------------------
# Loading the dataset


def _sets_to_score(
    dataset: str | Path | Mapping,
    configs: Sequence[str] | None = None,
    split: str = "test",
) -> tuple[dict, dict[str, str]]:
    """{config: Dataset} for the configs that exist, and {config: why skipped} for the others.

    `dataset` is a prepared folder or Hub id (`load_dataset(dataset, config, split=split)`) or a
    mapping config -> Dataset. `configs=None` means all KoIn configs, skipping missing ones with a
    note; configs named explicitly must exist.
    """
    found, skipped = load_test_sets(
        dataset,
        list(configs) if configs is not None else list(CONFIG_NAMES),
        split=split,
        required=configs is not None,
    )
    if not found:
        raise KoinError(f"nothing to evaluate: {'; '.join(skipped.values())}.")
    return found, skipped


# ---------------------------------------------------------------------------------------------
# Metrics


def config_metrics(scored: ScoredConfig, ks: Sequence[int] = DEFAULT_KS, metric=None) -> dict:
    """n, top-k accuracies (through the `evaluate` module) and per-class accuracies."""
    names = metric_names(ks)
    result: dict = {"n": int(len(scored.references))}
    if len(scored.references) == 0:
        result.update({name: None for name in names})
        result["per_class"] = {}
        return result
    metric = metric or load_top_k_metric()
    result.update(
        metric.compute(predictions=scored.logits, references=scored.references, k=list(ks))
    )
    credits = {k: top_k_credit(scored.logits, scored.references, k) for k in sorted(set(ks))}
    per_class = {}
    for index, name in enumerate(scored.class_names):
        mask = scored.dataset_labels == index
        count = int(mask.sum())
        per_class[name] = {"n": count}
        for k, name_k in zip(sorted(set(ks)), names, strict=True):
            per_class[name][name_k] = float(credits[k][mask].mean()) if count else None
    result["per_class"] = per_class
    return result


def robustness(per_config: Mapping[str, dict], ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Accuracy lost from normal to hard/group: absolute percentage points and relative to normal."""
    drops: dict = {}
    for base, shifted in ROBUSTNESS_SHIFTS:
        if base not in per_config or shifted not in per_config:
            continue
        entry = {}
        for name in metric_names(ks):
            a, b = per_config[base][name], per_config[shifted][name]
            if a is None or b is None:
                continue
            entry[name] = {
                base: a,
                shifted: b,
                "absolute_drop_points": 100.0 * (a - b),
                "relative_drop": (a - b) / a if a > 0 else None,
            }
        drops[f"{base}->{shifted}"] = entry
    return drops


# ---------------------------------------------------------------------------------------------
# The library entry point


def evaluate_model(
    model_dir_or_id: str | Path,
    dataset: str | Path | Mapping,
    configs: Sequence[str] | None = None,
    batch_size: int = 32,
    output_dir: str | Path | None = None,
    *,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    zero_shot: bool = False,
    prompt_template: str | Sequence[str] | None = None,
    device: str | torch.device | None = None,
    plots: bool = True,
    num_workers: int = 0,
    max_megapixels: float | None = None,
    faces: bool = False,
) -> dict:
    """Score a model on the KoIn configs; return (and with `output_dir`, write) the results.

    Returns the content of metrics.json:
        {"model", "dataset", "split", "mode", "tie_rule", "label_matching": {...},
         "configs": {config: {"n", "top1_accuracy", "top3_accuracy", "per_class": {name: {...}}}},
         "skipped_configs": {config: reason},
         "robustness": {"normal->hard": {"top1_accuracy": {"normal", "hard",
                        "absolute_drop_points", "relative_drop"}, ...}, "normal->group": ...}}
    Accuracies are fractions in [0, 1]; drops are percentage points and fractions of normal.
    With `output_dir`: metrics.json, report.md, predictions_<config>.csv and PNG plots.
    Images are decoded by koin-hf's decoder within the pixel budget `max_megapixels` (default
    $KOIN_MAX_MEGAPIXELS, else 64); an image it refuses is a KoinError naming it.
    With `faces`, the face configs of `koin prepare --faces` are scored too and the results get
    a "faces" entry (koin_hf.evaluation.faces: group photos by their faces, over all photos).
    """
    pixel_budget(max_megapixels)  # a bad value fails before the model or the data loads
    test_sets, skipped = _sets_to_score(dataset, configs, split)
    for config, reason in skipped.items():
        print(f"note: skipping {config}: {reason}.")
    scorer = ImageScorer(model_dir_or_id, zero_shot, prompt_template, device)
    metric = load_top_k_metric()
    scored: dict[str, ScoredConfig] = {}
    per_config: dict[str, dict] = {}
    for config, data in test_sets.items():
        scorer.set_class_names(data.features["label"].names)
        try:
            check_ks(ks, len(scorer.labels))  # before inference: fail in seconds, not after an hour
        except ValueError as err:
            raise KoinError(f"{err} (the model has {len(scorer.labels)} labels)") from err
        scored[config] = score_config(scorer, config, data, batch_size, num_workers, max_megapixels)
        per_config[config] = config_metrics(scored[config], ks, metric)

    face_results = None
    if faces:
        face_results = _score_faces(
            scorer,
            dataset,
            list(scored),
            per_config,
            split,
            batch_size,
            num_workers,
            max_megapixels,
        )

    first = next(iter(scored.values()))
    dataset_classes = {normalize_name(n) for s in scored.values() for n in s.class_names}
    results = {
        "model": str(model_dir_or_id),
        "dataset": "(in memory)" if isinstance(dataset, Mapping) else str(dataset),
        "split": split,
        "mode": "zero-shot" if zero_shot else "classifier",
        "prompt_template": (scorer.prompt_template if zero_shot else None),
        "tie_rule": TIE_RULE,
        "label_matching": {
            "model_labels": len(first.model_labels),
            "dataset_classes": len(first.class_names),
            "extra_model_labels": [
                label
                for label in first.model_labels
                if normalize_name(label) not in dataset_classes
            ],
        },
        "configs": per_config,
        "skipped_configs": skipped,
        "robustness": robustness(per_config, ks),
    }
    if face_results is not None:
        results["faces"] = face_results
    if output_dir is not None:
        write_outputs(results, scored, test_sets, Path(output_dir), ks, plots, max_megapixels)
    return results


def _score_faces(
    scorer: ImageScorer,
    dataset: str | Path | Mapping,
    whole_configs: list[str],
    per_config: Mapping[str, dict],
    split: str,
    batch_size: int,
    num_workers: int,
    max_megapixels: float | None,
) -> dict:
    from koin_hf.evaluation.faces import evaluate_faces
    from koin_hf.faces.configs import FACE_SUFFIX

    wanted = [f"{config}{FACE_SUFFIX}" for config in whole_configs]
    face_sets, missing = load_test_sets(dataset, wanted, split=split)
    if not face_sets:
        raise KoinError(
            f"--faces needs the face configs ({', '.join(wanted)}): prepare the dataset with "
            "`koin prepare RAW OUT --faces`"
        )
    for config, reason in missing.items():
        print(f"note: skipping {config}: {reason}.")
    photos = {config: metrics["n"] for config, metrics in per_config.items()}
    return evaluate_faces(scorer, face_sets, photos, batch_size, num_workers, max_megapixels)


def write_outputs(
    results: dict,
    scored: Mapping[str, ScoredConfig],
    test_sets: Mapping,
    output_dir: Path,
    ks: Sequence[int] = DEFAULT_KS,
    plots: bool = True,
    max_megapixels: float | None = None,
) -> None:
    """metrics.json, predictions_<config>.csv, plots and report.md."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    top = max(ks)
    for config, one in scored.items():
        write_predictions_csv(one, output_dir / f"predictions_{config}.csv", top)
    figures = {}
    if plots and importlib.util.find_spec("matplotlib") is None:
        logger.warning(
            "plots skipped: matplotlib is not installed (pip install 'koin-hf[plots]'; "
            "--no_plots skips them without this note)"
        )
    elif plots:
        # matplotlib is imported only when plots are asked for: scoring itself never needs it.
        from koin_hf.evaluation.plots import write_plots

        figures = write_plots(
            scored,
            test_sets,
            results["configs"],
            output_dir,
            max_megapixels,
            model_name=display_location(results["model"]),
        )
    write_report(results, figures, output_dir)


def dataset_from_run_record(model: str | Path) -> str:
    """The dataset a koin-hf model was trained on, from its run record (koin_training.json)."""
    record = RunRecord.load(model)
    if record.dataset_name:
        return record.dataset_name
    # Trained on the embedded synthetic KoIn: the same generated set (cached after training).
    return str(ensure_default_dataset(num_classes=record.synthetic_num_classes))
