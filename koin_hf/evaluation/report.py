"""The text outputs of `koin evaluate`: report.md and predictions_<config>.csv.

report.md puts our numbers first, the paper's headline numbers beside them (clearly marked as the
paper's, never mixed with ours), and the training setup from the model's run record.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from koin_hf.errors import KoinError
from koin_hf.evaluation.scoring import ScoredConfig, top_predictions
from koin_hf.run_record import RunRecord

# The KoIn authors' headline results (arXiv 2310.09756). Shown beside ours, never mixed with them.
PAPER_RESULTS: tuple[dict[str, str], ...] = (
    {
        "model": "DenseNet121",
        "setting": "trained on normal train",
        "test set": "normal",
        "top-1": "71.81%",
    },
    {
        "model": "CLIP ViT-L/14@336",
        "setting": "50 shots per class",
        "test set": "normal",
        "top-1": "91.70%",
    },
    {
        "model": "CLIP ViT-L/14@336",
        "setting": "5 shots per class",
        "test set": "hard",
        "top-1": "52.68%",
    },
)


NOT_RECORDED = "–"


def _pct(value: float | None) -> str:
    return NOT_RECORDED if value is None else f"{100.0 * value:.2f}%"


def display_location(value: object) -> str:
    """A model or dataset as a report shows it: a Hub id as it is, a local folder by its name.

    report.md travels (a Hub repo, a pull request, a colleague's mail): an absolute path of
    this machine means nothing there and tells where the author keeps their files.
    """
    if value is None:
        return NOT_RECORDED
    text = str(value)
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists() or text.startswith((".", "~")):
        return f"{path.resolve().name or text} (local folder)"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def clean(cell: object) -> str:
        return (NOT_RECORDED if cell is None else str(cell)).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return lines


def _training_summary(model: str) -> list[str]:
    try:
        record = RunRecord.load_if_present(model)
    except KoinError:  # an unreadable record leaves the report without its training section
        return []
    if record is None:
        return []
    values = record.to_dict()
    keys = (
        "family", "base_model", "method", "shots_per_class", "zero_shot_head_init",
        "num_train_epochs", "precision", "seed", "dataset", "dataset_config",
    )  # fmt: skip
    locations = ("base_model", "dataset")
    rows = [
        [key, display_location(values[key]) if key in locations else values[key]]
        for key in keys
        if values[key] is not None
    ]
    return (
        ["", "Training (from koin_training.json):", "", *_table(["setting", "value"], rows)]
        if rows
        else []
    )


def render_report(results: dict, figures: Mapping) -> str:
    """report.md as a string."""
    configs: dict = results["configs"]
    ks_names = [k for k in next(iter(configs.values())) if k.startswith("top")]
    lines = [f"# KoIn evaluation: `{display_location(results['model'])}`", ""]
    mode = results["mode"]
    if mode == "zero-shot":
        mode += f" (CLIP prompts, template {results.get('prompt_template')!r}, no training)"
    lines += [
        f"- dataset: `{display_location(results['dataset'])}`, split `{results['split']}`",
        f"- mode: {mode}",
        f"- labels: {results['label_matching']['model_labels']} model labels matched by name to "
        f"{results['label_matching']['dataset_classes']} dataset classes",
    ]
    extra = results["label_matching"]["extra_model_labels"]
    if extra:
        lines.append(
            f"- the model has {len(extra)} label(s) that are not dataset classes; it is ranked "
            "among all its labels, so predicting one of them counts as a miss"
        )
    for config, reason in results.get("skipped_configs", {}).items():
        lines.append(f"- skipped `{config}`: {reason}")
    lines += _training_summary(results["model"])

    lines += ["", "## Our results", ""]
    header = ["test set", "images"] + [
        k.replace("_accuracy", "").replace("top", "top-") for k in ks_names
    ]
    rows = [[c, m["n"], *[_pct(m[k]) for k in ks_names]] for c, m in configs.items()]
    lines += _table(header, rows)

    if results["robustness"]:
        lines += ["", "## Robustness: accuracy lost from the normal test set", ""]
        rows = []
        for shift, entry in results["robustness"].items():
            base, shifted = shift.split("->")
            label = f"{base} → {shifted}"
            for name, drop in entry.items():
                relative = (
                    "–" if drop["relative_drop"] is None else f"{100 * drop['relative_drop']:.1f}%"
                )
                points = f"{drop['absolute_drop_points']:.2f}"
                metric = name.replace("_accuracy", "")
                rows.append(
                    [label, metric, _pct(drop[base]), _pct(drop[shifted]), points, relative]
                )
        lines += ["A positive drop means the model does worse under the shift.", ""]
        lines += _table(
            ["shift", "metric", "normal", "shifted", "drop (points)", "relative drop"], rows
        )

    if results.get("faces"):
        from koin_hf.evaluation.faces import FACE_HEADER, face_rows

        lines += ["", "## Face path: detect, align, classify each face", ""]
        lines += [
            "Same model, scored on the face crops of `koin prepare --faces` beside the whole photos.",
            "Rates are over all photos: a photo where no face was found counts as a miss.",
            '"Person among the faces": the label is some face\'s top-1 (more faces, more chances).',
            "",
        ]
        lines += _table(FACE_HEADER, face_rows(results))

    lines += [
        "",
        "## The paper's numbers (for reference; NOT produced by this run)",
        "",
        "Reported by the KoIn authors (arXiv 2310.09756) on the real KoIn data. They are comparable to",
        "ours only for a model trained and tested on real KoIn with the same protocol, never for the",
        "synthetic stand-in. The paper's CLIP numbers come from a linear probe on frozen CLIP features.",
        "",
    ]
    lines += _table(
        ["paper's model", "paper's setting", "test set", "paper's top-1"],
        [[r["model"], r["setting"], r["test set"], r["top-1"]] for r in PAPER_RESULTS],
    )

    lines += ["", "## Per-class accuracy (top-1)", ""]
    names = list(dict.fromkeys(n for m in configs.values() for n in m["per_class"]))
    header = ["#", "class"] + [f"{c} n" if i % 2 == 0 else c for c in configs for i in range(2)]
    rows = []
    for index, name in enumerate(names):
        row: list = [index, name]
        for m in configs.values():
            entry = m["per_class"].get(name, {})
            row += [entry.get("n", 0), _pct(entry.get("top1_accuracy"))]
        rows.append(row)
    lines += _table(header, rows)

    if figures:
        lines += ["", "## Plots", ""]
        if figures.get("names_drawn_as_indices"):
            lines += [
                "No installed font draws some of these names, so plots label those classes by their `#`",
                "index in the table above (install a Hangul font such as fonts-nanum to see names).",
                "",
            ]
        for config, file in figures.get("confusion", {}).items():
            lines += [
                f"Confusion matrix, {config}:",
                "",
                f"![confusion matrix {config}]({file})",
                "",
            ]
        if "per_class" in figures:
            lines += [
                "Per-class top-1, normal vs hard:",
                "",
                f"![per-class]({figures['per_class']})",
                "",
            ]
        if "gallery" in figures:
            lines += [
                f"Most confident errors on {figures['gallery_config']} (true name and the rank the "
                "model gave it, predicted top-3):",
                "",
                f"![errors]({figures['gallery']})",
                "",
            ]
    lines += ["", "## How the numbers are computed", ""]
    lines += [
        f"- top-k accuracy from the model's logits with the koin-hf `evaluate` module; {results['tie_rule']}.",
        "- per-class accuracy: the same credit averaged over the images of each true class.",
        "- relative drop = (normal − other) / normal.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: dict, figures: Mapping, output_dir: Path) -> Path:
    path = output_dir / "report.md"
    path.write_text(render_report(results, figures), encoding="utf-8")
    return path


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
