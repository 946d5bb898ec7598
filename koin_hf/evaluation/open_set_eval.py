"""`koin evaluate --open_set`: known vs unknown people, calibration, and results per condition.

Everything runs on cached embeddings (`koin_hf.evaluation.embeddings`) and the model's own head,
so the backbone sees each image once per model, whatever is asked afterwards.

- Known images: the test splits of normal / hard / group. Unknown images: the `unknown` config
  (people who are not among the classes; `koin synth --unknown_classes K`, or an
  `unknown_cases/test/<id>/` folder given to `koin prepare`).
- AUROC known (normal) vs unknown for every score, TAR and DIR at FAR 1% and 0.1% (the FAR
  measured on the unknown test images), open-set accuracy at the model's own threshold
  (`koin calibrate`; an uncalibrated model gets the threshold for FAR 1% fitted here on its
  validation split, and the report says so), ECE with a reliability diagram (before and after
  the stored temperature).
- Per condition: top-1 and acceptance at the threshold for normal / mask / hat / mask+hat /
  group photos. For the synthetic KoIn, the condition of each hard photo is replayed from the
  generator's record (seed, image size) in the dataset's prepare report; for real KoIn, the
  conditions are the configs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koin_hf.dataset_script.koin import CONFIG_NAMES, OPEN_SET_CONFIG
from koin_hf.errors import KoinError
from koin_hf.evaluation.embeddings import (
    Embedder,
    Embeddings,
    carve_validation,
    embed_configs,
    head_parameters,
    logits_from_embeddings,
)
from koin_hf.evaluation.metrics import top_k_credit
from koin_hf.evaluation.open_set import (
    FARS,
    OpenSetSettings,
    Prototypes,
    auroc,
    held_out_prototype_scores,
    open_set_accuracy,
    open_set_scores,
    reliability,
    softmax,
    tar_at_far,
    threshold_at_far,
)
from koin_hf.faces.configs import is_face_config
from koin_hf.run_record import RunRecord

DEFAULT_TRAIN_VAL_SPLIT = 0.15
DEFAULT_SEED = 42
RELIABILITY_PNG = "reliability.png"


def split_like_training(model: str | Path, train: Embeddings) -> tuple[Embeddings, Embeddings]:
    """(training part, validation) of a train split, carved as the model's run carved it (its
    run record's seed and train_val_split; train.py's defaults without a record)."""
    record = RunRecord.load_if_present(model) if Path(str(model)).is_dir() else None
    seed = record.seed if record and record.seed is not None else DEFAULT_SEED
    fraction = (record.data_args.get("train_val_split") if record else None) or (
        DEFAULT_TRAIN_VAL_SPLIT
    )
    return carve_validation(train, float(fraction), int(seed))


def validation_of(model: str | Path, train: Embeddings) -> Embeddings:
    """The validation split the model was selected on: carved from train as its run did."""
    return split_like_training(model, train)[1]


def prototypes_for(model: str | Path, train: Embeddings, model_labels: list[str]) -> Prototypes:
    """The model's stored prototypes, else class means of the training part of `train`."""
    stored = Prototypes.load(model) if Path(str(model)).is_dir() else None
    if stored is not None and stored.rows.shape[0] == len(model_labels):
        return stored
    part = split_like_training(model, train)[0]
    refs = _to_model_index(part.class_names, model_labels)[part.labels]
    return Prototypes.from_embeddings(part.features, refs, len(model_labels))


def _to_model_index(class_names: list[str], model_labels: list[str]) -> np.ndarray:
    from koin_hf.evaluation.scoring import match_labels

    return match_labels(model_labels, class_names)


# ---------------------------------------------------------------------------------------------
# Conditions


_IMAGE_ID = re.compile(r"(?P<folder>[^/]+)/test/(?P<label>\d+)/img_(?P<index>\d+)\.\w+$")


def synthetic_conditions(dataset: str | Path, image_ids: list[str]) -> list[str] | None:
    """Each photo's condition replayed from the generator's record; None for real data."""
    report = Path(str(dataset)) / "prepare_report.json"
    if not report.is_file():
        return None
    try:
        marker = json.loads(report.read_text(encoding="utf-8")).get("synthetic")
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or "seed" not in marker:
        return None
    from koin_hf.synthetic.scene import SUBSETS, PhotoJob, photo_condition

    size = marker.get("image_size", "small")
    size = tuple(size) if isinstance(size, list) else size
    subset_of = {folder.split("/")[0].lower(): subset for subset, (folder, _) in SUBSETS.items()}
    conditions = []
    for image_id in image_ids:
        match = _IMAGE_ID.search(image_id)
        subset = subset_of.get(match["folder"].lower()) if match else None
        if subset is None:
            return None
        job = PhotoJob(int(marker["seed"]), subset, int(match["label"]), int(match["index"]), size)
        conditions.append(photo_condition(job))
    return conditions


# ---------------------------------------------------------------------------------------------
# The evaluation


@dataclass(frozen=True)
class OpenSetConfigs:
    """Which configs an open-set evaluation of a model reads, by what it was trained on."""

    train: str  # prototypes and the validation carve: the model's own training config
    known: tuple[str, ...]  # test sets of enrolled people
    unknown: str  # test set of people outside the classes

    @classmethod
    def for_model(cls, model: str | Path) -> OpenSetConfigs:
        """Whole photos for a whole-photo model; face crops (`normal-faces`, `hard-faces`,
        `unknown-faces`) for a face model. A face model's group photos are left to
        `koin evaluate --faces`: a group-faces row is any face of the photo, mostly not the
        labelled person, so it is no "known" image."""
        from koin_hf.evaluation.embeddings import training_config_for
        from koin_hf.faces.configs import like

        train = training_config_for(model)
        known = tuple(
            like(train, config)
            for config in CONFIG_NAMES
            if not (is_face_config(train) and config == "group")
        )
        return cls(train, known, like(train, OPEN_SET_CONFIG))


def check_open_set_dataset(
    model: str | Path, dataset: str | Path, available: Sequence[str] | None = None
) -> OpenSetConfigs:
    """The configs an open-set evaluation of `model` reads; a KoinError, before any model
    loads, when the dataset (whose configs are `available`, read here when not given) has no
    unknown people of the kind the model takes."""
    from koin_hf.data.loading import config_names

    configs = OpenSetConfigs.for_model(model)
    if available is None:
        available = config_names(dataset)
    if configs.unknown not in available:
        hint = (
            " (`koin prepare --faces` writes it from unknown_cases/)"
            if configs.unknown != OPEN_SET_CONFIG
            else ""
        )
        raise KoinError(
            f"--open_set needs the dataset's {configs.unknown!r} config (people who are not "
            "among the classes): `koin synth --unknown_classes K`, or an "
            f"unknown_cases/test/<id>/ folder in the raw data, then koin prepare{hint}."
        )
    return configs


def evaluate_open_set(
    model: str | Path,
    dataset: str | Path,
    output_dir: str | Path | None = None,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    max_megapixels: float | None = None,
    device=None,
    embedder: Embedder | None = None,
) -> dict:
    """Open-set metrics of a model on a dataset with an `unknown` config (see module doc)."""
    from koin_hf.data.loading import config_names

    available = config_names(dataset)
    configs = check_open_set_dataset(model, dataset, available)
    embedder = embedder or Embedder(model, device=device)
    weight, bias = head_parameters(embedder.model)
    settings = OpenSetSettings.from_config(embedder.model.config)
    wanted = [c for c in (*configs.known, configs.unknown, configs.train) if c in available]
    embedded = embed_configs(
        embedder, dataset, list(dict.fromkeys(wanted)), splits=["test", "train"],
        batch_size=batch_size, num_workers=num_workers, max_megapixels=max_megapixels,
    )  # fmt: skip
    unknown = embedded[f"{configs.unknown}/test"]
    first_known = configs.known[0]
    if f"{first_known}/test" not in embedded:
        raise KoinError(
            f"dataset {dataset} has no {first_known} test split: no known people to score."
        )
    model_labels = embedder.labels

    def scored(emb: Embeddings):
        logits = logits_from_embeddings(emb.features, weight, bias)
        return logits, open_set_scores(logits, emb.features, weight, prototypes)

    train = embedded.get(f"{configs.train}/train")
    if train is None:
        raise KoinError(
            f"dataset {dataset} has no {configs.train} train split (prototypes, validation)."
        )
    prototypes = prototypes_for(model, train, model_labels)
    unknown_logits, unknown_scores = scored(unknown)
    threshold_source = "model (koin calibrate)"
    if settings is not None:
        threshold, score_name = settings.threshold, settings.score
        temperature = settings.temperature if settings.temperature_folded else 1.0
    else:
        validation = validation_of(model, train)
        val_refs = _to_model_index(validation.class_names, model_labels)[validation.labels]
        impostors = held_out_prototype_scores(
            prototypes.similarities(validation.features), val_refs
        )
        threshold, score_name = threshold_at_far(impostors, 0.01), "prototype_cosine"
        temperature = 1.0
        threshold_source = "fitted here on validation for FAR 1% (the model is not calibrated)"

    results: dict = {
        "model": str(model),
        "dataset": str(dataset),
        "unknown_images": len(unknown),
        "unknown_people": len({i.rsplit("/", 2)[-2] for i in unknown.image_ids if "/" in i}),
        "threshold": {"value": threshold, "score": score_name, "source": threshold_source},
        "inputs": "face crops" if is_face_config(configs.train) else "whole photos",
        "temperature": temperature,
        "configs": {},
    }
    conditions_rows: dict[str, dict] = {}
    for config in configs.known:
        emb = embedded.get(f"{config}/test")
        if emb is None:
            continue
        logits, scores = scored(emb)
        refs = _to_model_index(emb.class_names, model_labels)[emb.labels]
        correct = top_k_credit(logits, refs, 1) == 1.0
        entry: dict = {"n": len(emb), "top1_accuracy": float(correct.mean())}
        entry["auroc"] = {name: auroc(scores[name], unknown_scores[name]) for name in scores}
        entry["tar_at_far"] = {
            f"{far:g}": tar_at_far(scores[score_name], correct, unknown_scores[score_name], far)
            for far in FARS
        }
        entry["open_set_accuracy"] = open_set_accuracy(
            scores[score_name], correct, unknown_scores[score_name], threshold
        )
        after = reliability(scores["msp"], correct)
        before = reliability(softmax(logits, 1.0 / temperature).max(axis=1), correct)
        entry["ece"] = {"after_temperature": after["ece"], "before_temperature": before["ece"]}
        entry["reliability_bins"] = after["bins"]
        results["configs"][config] = entry
        conditions = synthetic_conditions(dataset, emb.image_ids) or [config] * len(emb)
        accepted = scores[score_name] > threshold
        for condition in dict.fromkeys(conditions):
            mask = np.array([c == condition for c in conditions])
            row = conditions_rows.setdefault(condition, {"n": 0, "correct": 0, "accepted": 0,
                                                          "accepted_correct": 0})  # fmt: skip
            row["n"] += int(mask.sum())
            row["correct"] += int(correct[mask].sum())
            row["accepted"] += int(accepted[mask].sum())
            row["accepted_correct"] += int((accepted & correct)[mask].sum())
    results["per_condition"] = {
        condition: {
            "n": row["n"],
            "top1_accuracy": row["correct"] / row["n"],
            "accepted": row["accepted"] / row["n"],
            "accepted_and_correct": row["accepted_correct"] / row["n"],
        }
        for condition, row in conditions_rows.items()
    }
    results["per_condition"]["unknown"] = {
        "n": len(unknown),
        "top1_accuracy": None,
        "accepted": float(np.mean(unknown_scores[score_name] > threshold)),
        "accepted_and_correct": None,
    }
    if output_dir is not None:
        write_open_set_outputs(results, Path(output_dir))
    return results


# ---------------------------------------------------------------------------------------------
# Outputs


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_open_set_section(results: Mapping) -> str:
    normal = next(iter(results["configs"].values()), {})
    lines = [
        "## Open set: known vs unknown people",
        "",
        f"{results['unknown_images']} photos of {results['unknown_people']} people who are not "
        f"among the classes. Threshold on the {results['threshold']['score']} score: "
        f"{results['threshold']['value']:.4f} ({results['threshold']['source']}); "
        f"temperature {results['temperature']:.3f}. TAR, DIR and open-set accuracy use that "
        "score.",
        "",
        "| known set | n | top-1 | AUROC prototype cos | AUROC msp | AUROC max-logit | "
        "AUROC head cos | TAR@FAR1% | DIR@FAR1% | TAR@FAR0.1% | open-set acc. | ECE before | "
        "ECE after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, entry in results["configs"].items():
        au = entry["auroc"]
        t1, t01 = entry["tar_at_far"]["0.01"], entry["tar_at_far"]["0.001"]

        def number(v):
            return "-" if v is None else f"{v:.4f}"

        lines.append(
            f"| {config} | {entry['n']} | {_pct(entry['top1_accuracy'])} | "
            f"{number(au.get('prototype_cosine'))} | {number(au['msp'])} | "
            f"{number(au['max_logit'])} | {number(au.get('head_cosine'))} | {_pct(t1['tar'])} | "
            f"{_pct(t1['dir'])} | {_pct(t01['tar'])}{'' if t01['resolvable'] else '*'} | "
            f"{_pct(entry['open_set_accuracy']['accuracy'])} | "
            f"{number(entry['ece']['before_temperature'])} | "
            f"{number(entry['ece']['after_temperature'])} |"
        )
    lines += [
        "",
        "AUROC: known images of that set vs the unknown images. TAR: known images accepted at "
        "the threshold where the stated share of unknown images is accepted; DIR: accepted and "
        "named correctly. Open-set accuracy: known images accepted and named correctly plus "
        "unknown images rejected, over both, at the model's threshold. "
        + (
            "*: fewer than 1,000 unknown images, so FAR 0.1% means no unknown image accepted."
            if not normal.get("tar_at_far", {}).get("0.001", {}).get("resolvable", True)
            else ""
        ),
        "",
        "### Per condition",
        "",
        "| condition | n | top-1 | accepted at threshold | accepted and correct |",
        "|---|---|---|---|---|",
    ]
    for condition, row in results["per_condition"].items():
        lines.append(
            f"| {condition} | {row['n']} | {_pct(row['top1_accuracy'])} | {_pct(row['accepted'])} "
            f"| {_pct(row['accepted_and_correct'])} |"
        )
    lines += ["", f"![reliability diagram]({RELIABILITY_PNG})", ""]
    return "\n".join(lines)


def plot_reliability(results: Mapping, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    configs = list(results["configs"].items())
    fig = Figure(figsize=(4 * len(configs), 4))
    FigureCanvasAgg(fig)
    for i, (config, entry) in enumerate(configs, start=1):
        ax = fig.add_subplot(1, len(configs), i)
        bins = entry["reliability_bins"]
        centres = [(b["low"] + b["high"]) / 2 for b in bins if b["n"]]
        accuracy = [b["accuracy"] for b in bins if b["n"]]
        width = bins[0]["high"] - bins[0]["low"]
        ax.bar(centres, accuracy, width=width * 0.9, color="#4c72b0", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top softmax score)")
        ax.set_ylabel("top-1 accuracy")
        ece = entry["ece"]["after_temperature"]
        ax.set_title(f"{config}: ECE {ece:.3f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_open_set_outputs(results: dict, output_dir: Path) -> None:
    """Merge into metrics.json (key `open_set`), append to report.md, draw reliability.png."""
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / "metrics.json"
    metrics = {}
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["open_set"] = results
    metrics_path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", "utf-8")
    plot_reliability(results, output_dir / RELIABILITY_PNG)
    report = output_dir / "report.md"
    text = report.read_text(encoding="utf-8") if report.is_file() else "# Open-set report\n\n"
    marker = "## Open set: known vs unknown people"
    if marker in text:
        text = text[: text.index(marker)]
    report.write_text(text.rstrip("\n") + "\n\n" + render_open_set_section(results), "utf-8")
