"""Inference: `koin evaluate` and a batched `pipeline()` against the bare model's forward pass.

All three score the same test images in the same batches with the same model (ViT-S/16 at 224
from its config, random weights: timing does not depend on weight values):

* bare forward:    `model(pixel_values=...)` on batches pre-processed beforehand (no decoding,
                   no resizing): the ceiling;
* koin evaluate:   `koin_hf.evaluation.evaluate_model` end to end (load the model through
                   pipeline(), read the prepared dataset, decode, pre-process, forward, metrics);
                   its scoring loop alone is reported too;
* pipeline:        `pipeline("image-classification", model=DIR, batch_size=B)` over the dataset's
                   images (`KeyDataset`), as a user would run it.

Target: koin evaluate and pipeline at least 0.85x the bare forward's images/second, i.e.
loading and pre-processing must not dominate. Contenders run back to back in rounds (the order
rotating); the result is the median over rounds of the round-by-round ratio to the bare forward.

    python benchmarks/bench_inference.py
    python benchmarks/bench_inference.py --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _common import (
    Stopwatch,
    base_parser,
    interleaved,
    load_average,
    machine_description,
    median,
    paired_ratios,
    prepared,
    random_vit_checkpoint,
    spread,
    synthetic_raw,
    verdict,
    work_dir,
)

TARGET = 0.85
BARE = "bare model forward"


def bare_forward(model_dir: Path, test, batch_size: int):
    """Pre-process every batch once (outside the timing), then time the forward passes only."""
    from koin_hf.evaluation.scoring import ImageScorer

    scorer = ImageScorer(model_dir, device="cpu")
    batches = [
        scorer.preprocess(test[start : start + batch_size]["image"])
        for start in range(0, len(test), batch_size)
    ]

    def run() -> float:
        with Stopwatch() as watch:
            for pixel_values in batches:
                scorer.forward(pixel_values)
        return len(test) / watch.seconds

    return run


def koin_evaluate(model_dir: Path, prepared_dir: Path, batch_size: int):
    from koin_hf.evaluation.run import evaluate_model

    def run() -> float:
        with Stopwatch() as watch:
            results = evaluate_model(
                model_dir, prepared_dir, ["normal"], batch_size=batch_size, plots=False
            )
        return results["configs"]["normal"]["n"] / watch.seconds

    return run


def koin_scoring_loop(model_dir: Path, test, batch_size: int):
    """evaluate_model's inner loop (decode, pre-process, forward) without load or metrics."""
    from koin_hf.evaluation.scoring import ImageScorer, score_config

    scorer = ImageScorer(model_dir, device="cpu")

    def run() -> float:
        with Stopwatch() as watch:
            scored = score_config(scorer, "normal", test, batch_size)
        return len(scored.references) / watch.seconds

    return run


def batched_pipeline(model_dir: Path, test, batch_size: int):
    from transformers import pipeline
    from transformers.pipelines.pt_utils import KeyDataset

    classifier = pipeline("image-classification", model=str(model_dir), device="cpu")

    def run() -> float:
        with Stopwatch() as watch:
            outputs = list(classifier(KeyDataset(test, "image"), batch_size=batch_size, top_k=3))
        return len(outputs) / watch.seconds

    return run


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=320, help="test images scored per pass")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="alternating passes per contender")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch_size, args.rounds = 16, 8, 1
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    print(machine_description())
    root = work_dir(args.work_dir)
    classes = 10
    per_class = max(1, args.images // classes)
    raw = synthetic_raw(
        root,
        f"raw-small-{classes}x1+{per_class}",
        num_classes=classes,
        train_per_class=1,
        test_per_class=per_class,
    )
    prepared_dir = prepared(raw, root / f"raw-small-{classes}x1+{per_class}-prepared")
    from koin_hf.data.loading import load_prepared

    test = load_prepared(prepared_dir, "normal", split="test")
    names = test.features["label"].names
    model_dir, size, model_name = random_vit_checkpoint(root, args.quick, names)
    print(
        f"\nmodel: {model_name} at {size}x{size}, fp32, CPU ({torch.get_num_threads()} threads); "
        f"{len(test)} prepared test images (shorter side <= 256), batch {args.batch_size}, "
        f"{args.rounds} alternating passes each; images/second:"
    )
    contenders = {
        BARE: bare_forward(model_dir, test, args.batch_size),
        "koin evaluate (end to end)": koin_evaluate(model_dir, prepared_dir, args.batch_size),
        "koin evaluate scoring loop": koin_scoring_loop(model_dir, test, args.batch_size),
        "pipeline(batch_size)": batched_pipeline(model_dir, test, args.batch_size),
    }
    results = interleaved(contenders, args.rounds, log=lambda line: print(line, flush=True))
    bare = median(results[BARE])
    print(f"\n{'contender':<28} {'median img/s':>12} {'range':>13} {'of bare':>8}")
    for name, rates in results.items():
        print(
            f"{name:<28} {median(rates):>12.1f} {spread(rates):>13} {median(rates) / bare:>7.2f}x"
        )
    print(f"(load average at the end {load_average()})\n")
    for name in (
        "koin evaluate (end to end)",
        "koin evaluate scoring loop",
        "pipeline(batch_size)",
    ):
        per_round = paired_ratios(results[name], results[BARE])
        ratio = median(per_round)
        print(
            f"{name} / bare forward: per round {' '.join(f'{r:.3f}' for r in per_round)}; "
            f"median {ratio:.3f}  {verdict(ratio, TARGET)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
