"""Score any image classifier on the KoIn test sets: top-1/top-3 per config and robustness drops.

`evaluate_model` is the library entry point behind `koin evaluate`; train.py's end-of-run table is
checked against it. The model is loaded once, the way `pipeline("image-classification")` loads it
(so any pipeline-loadable model works: a koin-hf output dir, a Hub id, a timm wrapper), and then run
in batches with the pipeline's own image processor: same preprocessing, same logits, faster.

Labels are matched BY NAME (Unicode NFC, surrounding spaces ignored) between the model's
`config.id2label` and the dataset's `ClassLabel` names, never by index: a model trained with another
class order, or with more classes than the dataset, still scores correctly. A model with extra
labels is ranked among ALL its labels, as `pipeline()` would show it: predicting a class that is not
in the dataset counts as a miss. A dataset class the model does not know is an error.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from koin_hf import data as koin_data
from koin_hf.dataset_script.koin import CONFIG_NAMES
from koin_hf.errors import KoinError
from koin_hf.mapped_pages import releasing_pages
from koin_hf.metrics import DEFAULT_KS, check_ks, load_top_k_metric, metric_names, top_k_credit
from koin_hf.transforms import one_torch_thread

# Robustness is measured against the normal test set: how much accuracy a shift in conditions costs.
ROBUSTNESS_SHIFTS: tuple[tuple[str, str], ...] = (("normal", "hard"), ("normal", "group"))
TIE_RULE = (
    "ties shared fairly: credit = clip((k - #higher) / #tied incl. the true class, 0, 1), "
    "the expected hit under random tie-breaking"
)


@dataclass
class ScoredConfig:
    """Everything one config's inference produced; metrics and reports are computed from this."""

    config: str
    class_names: list[str]  # the dataset's ClassLabel names, in dataset order
    model_labels: list[str]  # the model's labels, in logit order
    logits: np.ndarray  # (n, n_model_labels) float32
    references: np.ndarray  # (n,) index of the true class among model labels
    dataset_labels: np.ndarray  # (n,) index of the true class among dataset classes
    image_ids: list[str] = field(default_factory=list)

    def probabilities(self) -> np.ndarray:
        """Softmax scores, the numbers `pipeline()` reports."""
        shifted = self.logits - self.logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


def normalize_name(name: str) -> str:
    # Korean names from macOS file systems arrive decomposed (NFD); Hub configs are usually NFC.
    return unicodedata.normalize("NFC", str(name)).strip()


def match_labels(model_labels: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Index of each dataset class among the model's labels; KoinError naming any missing ones."""
    index: dict[str, int] = {}
    for i, label in enumerate(model_labels):
        key = normalize_name(label)
        if key in index:
            raise KoinError(f"the model has the label {label!r} twice; labels must be unique.")
        index[key] = i
    missing = [name for name in class_names if normalize_name(name) not in index]
    if missing:
        shown = ", ".join(repr(name) for name in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        hint = ""
        if all(str(label).startswith("LABEL_") for label in model_labels):
            hint = " (its labels are generic LABEL_i: was it saved without id2label?)"
        raise KoinError(
            f"the model's labels do not cover the dataset: {len(missing)} of {len(class_names)} "
            f"classes missing from config.id2label{hint}: {shown}{more}."
        )
    return np.array([index[normalize_name(name)] for name in class_names], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Loading the dataset


def load_test_sets(
    dataset: str | Path | Mapping,
    configs: Sequence[str] | None = None,
    split: str = "test",
) -> tuple[dict, dict[str, str]]:
    """{config: Dataset} for the configs that exist, and {config: why skipped} for the others.

    `dataset` is a prepared folder or Hub id (`load_dataset(dataset, config, split=split)`) or a
    mapping config -> Dataset. `configs=None` means all KoIn configs, skipping missing ones with a
    note; configs named explicitly must exist.
    """
    found, skipped = koin_data.load_test_sets(
        dataset,
        list(configs) if configs is not None else list(CONFIG_NAMES),
        split=split,
        required=configs is not None,
    )
    if not found:
        raise KoinError(f"nothing to evaluate: {'; '.join(skipped.values())}.")
    return found, skipped


# ---------------------------------------------------------------------------------------------
# Loading the model and scoring images


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ImageScorer:
    """Loads a model once and turns batches of PIL images into logits over its labels."""

    def __init__(
        self,
        model_dir_or_id: str | Path,
        zero_shot: bool = False,
        prompt_template: str | Sequence[str] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.source = str(model_dir_or_id)
        self.zero_shot = zero_shot
        self.device = torch.device(device) if device is not None else default_device()
        try:
            if zero_shot:
                self._load_dual_encoder(prompt_template)
            else:
                self._load_classifier()
        except (OSError, ValueError) as err:
            if isinstance(err, KoinError):
                raise
            raise KoinError(f"cannot load the model {self.source!r}: {err}") from err

    def _load_classifier(self) -> None:
        from transformers import pipeline

        # Built through pipeline() so model class, image processor (fast or slow) and dtype are
        # exactly the ones `pipeline("image-classification", model=...)` users get.
        pipe = pipeline("image-classification", model=self.source, device=self.device)
        self.model = pipe.model.eval()
        self.image_processor = pipe.image_processor
        id2label = self.model.config.id2label
        self.labels = [id2label[i] for i in range(len(id2label))]

    def _load_dual_encoder(self, prompt_template: str | Sequence[str] | None) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        from koin_hf.zero_shot import DEFAULT_PROMPT_TEMPLATE, load_dual_encoder

        self.model = load_dual_encoder(self.source).to(self.device)
        self.image_processor = AutoImageProcessor.from_pretrained(self.source)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.prompt_template = prompt_template or DEFAULT_PROMPT_TEMPLATE
        self.labels: list[str] = []
        self._text_embeddings = None

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Zero-shot: the classes ARE the dataset's names, embedded once as prompts."""
        if not self.zero_shot or list(class_names) == self.labels:
            return
        from koin_hf.zero_shot import zero_shot_text_embeddings

        self.labels = list(class_names)
        self._text_embeddings = zero_shot_text_embeddings(
            self.model, self.labels, self.prompt_template, tokenizer=self.tokenizer
        ).to(self.device)

    def preprocess(self, images: Sequence) -> torch.Tensor:
        return preprocess_images(self.image_processor, images)

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor) -> np.ndarray:
        """(batch, n_labels) float32 logits."""
        pixel_values = pixel_values.to(self.device, self.model.dtype)
        if self.zero_shot:
            from koin_hf.zero_shot import zero_shot_image_logits

            out = zero_shot_image_logits(self.model, pixel_values, self._text_embeddings)
        else:
            out = self.model(pixel_values=pixel_values).logits
        return out.float().cpu().numpy()

    def logits(self, images: Sequence) -> np.ndarray:
        """(len(images), n_labels) float32 logits for PIL images."""
        return self.forward(self.preprocess(images))


def preprocess_images(image_processor, images: Sequence) -> torch.Tensor:
    """Pixel values for PIL images, exactly as pipeline() prepares them."""
    from transformers.image_utils import load_image

    # load_image applies the EXIF orientation and converts to RGB, as the pipeline does.
    rgb = [load_image(image) for image in images]
    # Small per-image ops on two threads stall when the cores are shared (30 ms vs 1 ms per
    # image measured by benchmarks/bench_inference.py), so pre-processing runs on one.
    with one_torch_thread():
        return image_processor(images=rgb, return_tensors="pt")["pixel_values"]


class _Batches:
    """DataLoader collate: decode + preprocess rows in the loader's workers, not the main loop.

    Holds only the image processor, never the model, so workers touch no GPU state.
    """

    def __init__(self, image_processor) -> None:
        self.image_processor = image_processor

    def __call__(self, rows: list[dict]) -> tuple[torch.Tensor, list[int], list[str | None]]:
        pixel_values = preprocess_images(self.image_processor, [row["image"] for row in rows])
        return (
            pixel_values,
            [int(row["label"]) for row in rows],
            [row.get("image_id") for row in rows],
        )


def score_config(
    scorer: ImageScorer, config: str, data, batch_size: int = 32, num_workers: int = 0
) -> ScoredConfig:
    """Run the model over one config's test set, batched, with a progress bar.

    `num_workers` > 0 decodes and preprocesses images in that many DataLoader processes while the
    model runs, which keeps a GPU busy; the results are the same.
    """
    if batch_size < 1:
        raise KoinError(f"--batch_size must be at least 1, got {batch_size}.")
    class_names = list(data.features["label"].names)
    scorer.set_class_names(class_names)
    to_model = match_labels(scorer.labels, class_names)
    columns = [c for c in ("image", "label", "image_id") if c in data.column_names]
    loader = torch.utils.data.DataLoader(
        data.select_columns(columns),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        # Hands the dataset's memory-mapped pages back after each batch, as training does.
        collate_fn=releasing_pages(_Batches(scorer.image_processor), data),
    )
    chunks: list[np.ndarray] = []
    labels: list[int] = []
    image_ids: list[str] = []
    with tqdm(total=len(data), desc=f"evaluate {config}", unit="img") as progress:
        for pixel_values, batch_labels, batch_ids in loader:
            chunks.append(scorer.forward(pixel_values))
            start = len(labels)
            labels.extend(batch_labels)
            image_ids.extend(
                i if i is not None else str(start + n) for n, i in enumerate(batch_ids)
            )
            progress.update(len(batch_labels))
    dataset_labels = np.asarray(labels, dtype=np.int64)
    n_labels = len(scorer.labels)
    return ScoredConfig(
        config=config,
        class_names=class_names,
        model_labels=list(scorer.labels),
        logits=np.concatenate(chunks) if chunks else np.zeros((0, n_labels), np.float32),
        references=to_model[dataset_labels],
        dataset_labels=dataset_labels,
        image_ids=image_ids,
    )


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
    """
    test_sets, skipped = load_test_sets(dataset, configs, split)
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
        scored[config] = score_config(scorer, config, data, batch_size, num_workers)
        per_config[config] = config_metrics(scored[config], ks, metric)

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
    if output_dir is not None:
        write_outputs(results, scored, test_sets, Path(output_dir), ks, plots)
    return results


def write_outputs(
    results: dict,
    scored: Mapping[str, ScoredConfig],
    test_sets: Mapping,
    output_dir: Path,
    ks: Sequence[int] = DEFAULT_KS,
    plots: bool = True,
) -> None:
    """metrics.json, predictions_<config>.csv, and (via koin_hf.reports) plots and report.md."""
    from koin_hf import reports

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    top = max(ks)
    for config, one in scored.items():
        write_predictions_csv(one, output_dir / f"predictions_{config}.csv", top)
    figures = (
        reports.write_plots(scored, test_sets, results["configs"], output_dir) if plots else {}
    )
    reports.write_report(results, figures, output_dir)


def top_predictions(scored: ScoredConfig, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, top) of the best model labels and their softmax scores, in pipeline() order."""
    probabilities = scored.probabilities()
    # A stable sort on the negated logits keeps ties in label order, as pipeline()'s sort does.
    order = np.argsort(-scored.logits, axis=1, kind="stable")[:, :top]
    return order, np.take_along_axis(probabilities, order, axis=1)


def write_predictions_csv(scored: ScoredConfig, path: Path, top: int = 3) -> None:
    order, scores = top_predictions(scored, top)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["image_id", "label", "correct_top1"]
        for rank in range(1, top + 1):
            header += [f"pred{rank}", f"score{rank}"]
        writer.writerow(header)
        for i, image_id in enumerate(scored.image_ids):
            row = [
                image_id,
                scored.class_names[scored.dataset_labels[i]],
                int(order[i, 0] == scored.references[i]),
            ]
            for rank in range(top):
                row += [scored.model_labels[order[i, rank]], f"{scores[i, rank]:.6f}"]
            writer.writerow(row)
