"""`koin probe MODEL --dataset D`: the paper's linear probe (logistic regression, L-BFGS)."""

from __future__ import annotations

import argparse

from koin_hf.training.probe import DEFAULT_C_SWEEP, DEFAULT_MAX_ITER, DEFAULT_TOL


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fit the KoIn paper's linear probe: multinomial logistic regression (L-BFGS) on the "
        "model's cached image embeddings (koin embed), C chosen on the validation split carved "
        "from train, saved as a pipeline-ready model folder (backbone + linear head)."
    )
    parser.add_argument(
        "model", help="backbone: a family name (lite0, clip, ...), folder or Hub id"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="prepared KoIn dataset (default: the embedded synthetic one)",
    )
    parser.add_argument("--output_dir", default=None, help="default: outputs/koin-<model>-probe")
    parser.add_argument(
        "--C",
        dest="c_values",
        type=float,
        nargs="+",
        default=list(DEFAULT_C_SWEEP),
        metavar="C",
        help="inverse L2 strengths to sweep (scikit-learn's C; default 0.001 ... 100 in half "
        "decades, with the paper's 0.316)",
    )
    parser.add_argument("--shots_per_class", type=int, default=None, help="5, 10, 50: few-shot")
    parser.add_argument("--train_val_split", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42, help="validation carve and few-shot draw")
    parser.add_argument(
        "--dataset_config_name", default="normal", help="config with the train split"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument(
        "--max_iter", type=int, default=DEFAULT_MAX_ITER, help="most L-BFGS iterations per C"
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=DEFAULT_TOL,
        help="stop a fit when every gradient entry is below this (scikit-learn's default 1e-4)",
    )
    parser.add_argument(
        "--no_test_sets",
        dest="test_sets",
        action="store_false",
        help="skip scoring normal/hard/group",
    )
    parser.add_argument("--overwrite_output_dir", action="store_true")
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    import re

    from koin_hf.training.probe import run_probe

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", args.model.rstrip("/").split("/")[-1]) or "model"
    output_dir = args.output_dir or f"outputs/koin-{slug}-probe"
    result = run_probe(
        args.model,
        args.dataset,
        output_dir,
        c_values=args.c_values,
        shots_per_class=args.shots_per_class,
        train_val_split=args.train_val_split,
        seed=args.seed,
        config=args.dataset_config_name,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        max_iter=args.max_iter,
        tol=args.tol,
        test_sets=args.test_sets,
        overwrite_output_dir=args.overwrite_output_dir,
        device=args.device,
    )
    metrics, probe = result["metrics"], result["probe"]
    print(f"\n{'C':>9} {'val top-1':>10} {'val NLL':>8} {'iters':>6}")
    for fit in probe["sweep"]:
        mark = "  <- chosen" if fit["C"] == probe["chosen_C"] else ""
        top1 = 100 * fit["validation_top1_accuracy"]
        print(
            f"{fit['C']:>9g} {top1:9.2f}% {fit['validation_nll']:8.4f} {fit['iterations']:>6}{mark}"
        )
    print(f"\n{'set':<11} {'images':>7} {'top-1':>7} {'top-3':>7}")
    for name in ("validation", "normal", "hard", "group"):
        top1 = metrics.get(f"eval_{name}_top1_accuracy")
        if top1 is None:
            continue
        top3 = metrics[f"eval_{name}_top3_accuracy"]
        n = metrics[f"eval_{name}_num_images"]
        print(f"{name:<11} {n:>7} {100 * top1:6.2f}% {100 * top3:6.2f}%")
    print(
        f"\nprobe: {metrics['probe_seconds']:.1f} s (embeddings {metrics['probe_embed_seconds']:.1f} s, "
        f"fits {metrics['probe_fit_seconds']:.1f} s)"
    )
    print(f"Saved a pipeline-ready model to {result['output_dir']}")
    return 0
