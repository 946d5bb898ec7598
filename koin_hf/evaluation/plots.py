"""The PNG plots of `koin evaluate`: confusion matrices, per-class normal vs hard, an error gallery.

Plots use matplotlib's object API (`Figure` + Agg canvas), never pyplot, so writing a report does
not touch the global backend of a caller's interactive session and works headless.

Korean names need a font with Hangul glyphs, which many machines lack (matplotlib's DejaVu has
none). The plots use the first installed font that covers every character of the class names; if
there is none, classes are drawn as "#index" and report.md carries the index -> name table.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, fontManager

from koin_hf.data.images import decode_rgb
from koin_hf.data.transforms import image_source, undecoded_images
from koin_hf.evaluation.scoring import match_labels, top_predictions

GALLERY_SIZE = 12
# Above this many classes, per-cell counts and tick names become unreadable; show the colours only.
MAX_ANNOTATED_CLASSES = 20
MAX_TICK_LABELS = 60


# ---------------------------------------------------------------------------------------------
# Fonts


@cache
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@cache
def _font_covering(characters: frozenset[str]) -> str | None:
    """Path of an installed font with a glyph for every character, or None."""
    needed = {ord(c) for c in characters if not c.isspace()}
    preferred = ("nanum", "noto sans cjk", "noto sans kr", "malgun", "apple sd gothic", "gothic")
    entries = sorted(
        fontManager.ttflist, key=lambda f: not any(p in f.name.lower() for p in preferred)
    )
    for entry in entries:
        # matplotlib's LastResort font "covers" all of Unicode with placeholder boxes.
        if "last resort" not in entry.name.lower() and needed <= _charmap(entry.fname):
            return entry.fname
    return None


def class_display_names(names: list[str]) -> tuple[list[str], FontProperties | None]:
    """Names as they can be drawn, and the font to draw them with (None: matplotlib's default).

    With a font covering every name, all names; otherwise each name the default font cannot draw
    becomes "#index" (its row in report.md's per-class table).
    """
    default = _charmap(findfont(FontProperties()))
    if all(ord(c) in default or c.isspace() for c in "".join(names)):
        return list(names), None
    path = _font_covering(frozenset("".join(names)))
    if path is not None:
        return list(names), FontProperties(fname=path)
    drawable = [all(ord(c) in default or c.isspace() for c in name) for name in names]
    return [
        n if ok else f"#{i}" for i, (n, ok) in enumerate(zip(names, drawable, strict=True))
    ], None


def names_are_drawable(names: list[str]) -> bool:
    return class_display_names(names)[0] == list(names)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


# ---------------------------------------------------------------------------------------------
# Plots


def plot_confusion(
    scored, path: Path, model_name: str = "", top1_accuracy: float | None = None
) -> Figure:
    """Row-normalised confusion matrix, true dataset class x predicted top-1 label.

    The title names the model and its top-1 accuracy, so a figure copied out of its report
    still says what it shows.
    """
    names = scored.class_names
    n_classes = len(names)
    model_to_dataset = {int(m): d for d, m in enumerate(_dataset_to_model(scored))}
    predicted = scored.logits.argmax(axis=1) if len(scored.logits) else np.zeros(0, np.int64)
    # Predictions of a model label that is not a dataset class land in one extra "other" column.
    columns = np.array([model_to_dataset.get(int(p), n_classes) for p in predicted], dtype=np.int64)
    has_other = bool((columns == n_classes).any())
    counts = np.zeros((n_classes, n_classes + int(has_other)), dtype=np.int64)
    np.add.at(counts, (scored.dataset_labels, columns), 1)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)

    display, font = class_display_names(names)
    side = min(4 + 0.35 * n_classes, 30)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n_classes <= MAX_TICK_LABELS:
        ax.set_yticks(range(n_classes), display, fontproperties=font, fontsize=8)
        x_names = display + (["(other label)"] if has_other else [])
        ax.set_xticks(range(len(x_names)), x_names, fontproperties=font, fontsize=8, rotation=90)
    if n_classes <= MAX_ANNOTATED_CLASSES:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true class")
    accuracy = f", top-1 {100 * top1_accuracy:.1f}%" if top1_accuracy is not None else ""
    model = f"{model_name}: " if model_name else ""
    ax.set_title(
        f"{model}{scored.config} ({len(scored.references)} images{accuracy})\n"
        "confusion matrix, share of each true class"
    )
    _save(fig, path)
    return fig


def _dataset_to_model(scored) -> np.ndarray:
    # Recover each dataset class's model index from the (label, reference) pairs actually seen;
    # classes without images are matched by name.
    return match_labels(scored.model_labels, scored.class_names)


def plot_per_class(per_config: Mapping[str, dict], names: list[str], path: Path) -> Figure:
    """Horizontal bars: per-class top-1 accuracy on normal vs hard, sorted by the drop."""
    normal = per_config["normal"]["per_class"]
    hard = per_config["hard"]["per_class"]

    def accuracy(table: dict, name: str) -> float:
        value = table.get(name, {}).get("top1_accuracy")
        return np.nan if value is None else 100.0 * value

    a = np.array([accuracy(normal, n) for n in names])
    b = np.array([accuracy(hard, n) for n in names])
    order = np.argsort(-np.nan_to_num(a - b, nan=-np.inf), kind="stable")  # largest drop on top
    display, font = class_display_names(names)
    positions = np.arange(len(names))
    fig = Figure(figsize=(8, 1.5 + 0.28 * len(names)))
    ax = fig.add_subplot()
    ax.barh(positions - 0.2, a[order], height=0.4, label="normal", color="#4C72B0")
    ax.barh(positions + 0.2, b[order], height=0.4, label="hard", color="#DD8452")
    ax.set_yticks(positions, [display[i] for i in order], fontproperties=font, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_title("Per-class top-1 accuracy: normal vs hard (largest drop first)", pad=24)
    # Outside the axes, above them: inside, the legend covered the bars of the last classes.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
    return fig


def plot_error_gallery(
    scored, data, path: Path, size: int = GALLERY_SIZE, max_megapixels: float | None = None
) -> int:
    """The most confident top-1 errors: image, true name and where it ranked, predicted top-3.

    Images are decoded as scoring decoded them (koin-hf's decoder, the same pixel budget). The
    true name's rank among all the model's labels is in each title; when it is among the
    top-3 shown, its line is marked. Returns how many errors are shown (0: nothing written).
    """
    order, scores = top_predictions(scored, min(3, len(scored.model_labels)))
    ranks = true_ranks(scored)
    wrong = np.flatnonzero(order[:, 0] != scored.references)
    if len(wrong) == 0:
        return 0
    shown = wrong[np.argsort(-scores[wrong, 0], kind="stable")][:size]
    display, font = class_display_names(scored.class_names)
    # Predicted labels are model labels: show them as their dataset class (same "#index" as the
    # report's table); a label outside the dataset only by its name, if drawable.
    dataset_of = {int(m): d for d, m in enumerate(_dataset_to_model(scored))}
    extra, _ = class_display_names(scored.model_labels)
    model_display = [
        display[dataset_of[m]]
        if m in dataset_of
        else (extra[m] if extra[m][0] != "#" else "(other)")
        for m in range(len(scored.model_labels))
    ]
    stored = undecoded_images(data)
    cols = min(4, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    fig = Figure(figsize=(3.2 * cols, 3.9 * rows))
    for slot, index in enumerate(shown):
        ax = fig.add_subplot(rows, cols, slot + 1)
        value = stored[int(index)]["image"]
        image = decode_rgb(image_source(value), 256, max_megapixels=max_megapixels)
        image.thumbnail((256, 256))
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        true_name = display[scored.dataset_labels[index]]
        reference = int(scored.references[index])
        lines = [
            f"{rank + 1}. {model_display[order[index, rank]]}  {scores[index, rank]:.2f}"
            + ("  <- true" if order[index, rank] == reference else "")
            for rank in range(order.shape[1])
        ]
        where = (
            f"ranked #{ranks[index]} of {len(scored.model_labels)}"
            if ranks[index]
            else "not a model label"
        )
        ax.set_title(
            f"true: {true_name} ({where})", fontproperties=font, fontsize=9, color="#1a7f37"
        )
        ax.set_xlabel("\n".join(lines), fontproperties=font, fontsize=8, color="#b42318")
    fig.suptitle(f"Most confident errors on {scored.config} (top-1 wrong)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return len(shown)


def true_ranks(scored) -> np.ndarray:
    """Each image's true class rank among the model's labels (1 = top-1), 0 when it has none.

    Ties are ranked as pipeline() orders them: a label tied with the true one and listed
    before it ranks above it (a stable sort on the negated logits).
    """
    ranks = np.zeros(len(scored.references), dtype=np.int64)
    if not len(scored.references):
        return ranks
    order = np.argsort(-scored.logits, axis=1, kind="stable")
    for index, reference in enumerate(scored.references):
        if reference >= 0:
            ranks[index] = int(np.flatnonzero(order[index] == reference)[0]) + 1
    return ranks


def write_plots(
    scored: Mapping,
    test_sets: Mapping,
    per_config: Mapping[str, dict],
    output_dir: Path,
    max_megapixels: float | None = None,
    model_name: str = "",
) -> dict:
    """All plots for the configs present; returns {"confusion": {config: file}, ...}."""
    figures: dict = {"confusion": {}}
    for config, one in scored.items():
        name = f"confusion_{config}.png"
        accuracy = per_config.get(config, {}).get("top1_accuracy")
        plot_confusion(one, output_dir / name, model_name=model_name, top1_accuracy=accuracy)
        figures["confusion"][config] = name
    if "normal" in scored and "hard" in scored:
        names = list(dict.fromkeys(scored["normal"].class_names + scored["hard"].class_names))
        plot_per_class(per_config, names, output_dir / "per_class_normal_vs_hard.png")
        figures["per_class"] = "per_class_normal_vs_hard.png"
    gallery_config = "hard" if "hard" in scored else next(iter(scored))
    count = plot_error_gallery(
        scored[gallery_config],
        test_sets[gallery_config],
        output_dir / f"errors_{gallery_config}.png",
        max_megapixels=max_megapixels,
    )
    if count:
        figures["gallery"] = f"errors_{gallery_config}.png"
        figures["gallery_config"] = gallery_config
    figures["names_drawn_as_indices"] = not names_are_drawable(
        next(iter(scored.values())).class_names
    )
    return figures
