"""`koin evaluate MODEL --dataset DATA`: top-1/top-3 on normal, hard and group, plus reports."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from koin_hf.data.images import MAX_MEGAPIXELS_HELP, pixel_budget
from koin_hf.dataset_script.koin import CONFIG_NAMES
from koin_hf.errors import KoinError
from koin_hf.hub.cards import is_hub_id


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="any pipeline('image-classification') model: a koin-hf output dir, a Hub id, ...; "
        "with --zero_shot a CLIPModel dir or Hub id",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="prepared KoIn dataset: a folder (koin prepare) or Hub id (default: the dataset named "
        "in MODEL/koin_training.json (the run record), i.e. the one the model was trained on)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        metavar="CONFIG",
        help=f"configs to score (default: {' '.join(CONFIG_NAMES)}, skipping any the dataset "
        "lacks; configs named here must exist)",
    )
    parser.add_argument("--split", default="test", help="split of each config (default: test)")
    parser.add_argument(
        "--output_dir",
        default=None,
        help="where metrics.json, report.md, predictions CSVs and plots go "
        "(default: ./koin_eval/<model>)",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--num_workers",
        type=int,
        default=0,
        help="processes decoding and preprocessing images while the model runs (default 0)",
    )
    parser.add_argument(
        "--zero_shot",
        action="store_true",
        help="score a CLIPModel with class-name prompts, no training",
    )
    parser.add_argument(
        "--prompt_template",
        action="append",
        default=None,
        metavar="TEMPLATE",
        help="zero-shot prompt with {name}; repeat the flag to average several "
        "(default: 'a photo of {name}.')",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--no_plots", dest="plots", action="store_false", help="skip the PNG plots")
    parser.add_argument(
        "--open_set",
        action="store_true",
        help="also score known vs unknown people (the dataset's 'unknown' config): AUROC, TAR at "
        "FAR 1%% and 0.1%%, open-set accuracy at the model's threshold, ECE and a reliability "
        "diagram, results per condition",
    )
    parser.add_argument("--max_megapixels", type=float, default=None, help=MAX_MEGAPIXELS_HELP)
    parser.add_argument(
        "--faces",
        action="store_true",
        help="also score the face configs of `koin prepare --faces`: group photos by their "
        "faces (is the person among them, the most confident face's top-1/top-3)",
    )


def _default_output_dir(model: str) -> Path:
    # Not inside the model dir: `koin push` uploads that folder, and reports do not belong there.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.rstrip("/")).strip("-.") or "model"
    return Path("koin_eval") / slug


def _check_model(model: str) -> None:
    """A local path that is no model folder fails here, before any dataset is loaded."""
    path = Path(model).expanduser()
    if path.is_file():
        raise KoinError(f"{model} is a file: pass a model folder (with config.json) or a Hub id.")
    if not path.exists() and not is_hub_id(model):
        raise KoinError(f"model {model} not found: no such folder, and not a Hub id.")


def run(args: argparse.Namespace) -> int:
    from koin_hf.evaluation.run import dataset_from_run_record, evaluate_model
    from koin_hf.models.model_folder import check_model_folder

    if args.prompt_template and not args.zero_shot:
        raise KoinError("--prompt_template only applies with --zero_shot.")
    _check_model(args.model)
    pixel_budget(args.max_megapixels)
    output_dir = args.output_dir or _default_output_dir(args.model)
    if args.dataset:
        dataset = args.dataset
    else:
        try:
            dataset = dataset_from_run_record(args.model)
        except KoinError as err:
            raise KoinError(f"pass --dataset: {err}") from None
    check_model_folder(args.model)  # truncated or missing weights: one line, before any data
    print(f"dataset: {dataset}")
    if args.open_set:
        if args.zero_shot:
            raise KoinError(
                "--open_set scores a classifier's head; it does not apply with --zero_shot."
            )
        from koin_hf.evaluation.open_set_eval import check_open_set_dataset

        check_open_set_dataset(args.model, dataset)
    results = evaluate_model(
        args.model,
        dataset,
        configs=args.configs,
        batch_size=args.batch_size,
        output_dir=output_dir,
        split=args.split,
        zero_shot=args.zero_shot,
        prompt_template=args.prompt_template,
        device=args.device,
        plots=args.plots,
        num_workers=args.num_workers,
        max_megapixels=args.max_megapixels,
        faces=args.faces,
    )
    print(f"\n{'test set':<10} {'images':>7} {'top-1':>8} {'top-3':>8}")
    for config, metrics in results["configs"].items():
        top1, top3 = metrics.get("top1_accuracy"), metrics.get("top3_accuracy")
        cells = [f"{100 * v:7.2f}%" if v is not None else f"{'-':>8}" for v in (top1, top3)]
        print(f"{config:<10} {metrics['n']:>7} {cells[0]} {cells[1]}")
    for shift, entry in results["robustness"].items():
        drop = entry.get("top1_accuracy")
        if drop:
            print(f"{shift}: top-1 drop {drop['absolute_drop_points']:.2f} points")
    from koin_hf.evaluation.faces import face_summary

    for line in face_summary(results):
        print(line)
    if args.open_set:
        _open_set(args, dataset, output_dir)
    print(f"\nwrote {output_dir}/metrics.json and {output_dir}/report.md")
    return 0


def _open_set(args: argparse.Namespace, dataset: str, output_dir) -> None:
    from koin_hf.evaluation.open_set_eval import evaluate_open_set

    results = evaluate_open_set(
        args.model,
        dataset,
        output_dir,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        max_megapixels=args.max_megapixels,
        device=args.device,
    )
    threshold = results["threshold"]
    print(f"\nopen set: {results['unknown_images']} photos of {results['unknown_people']} unknown "
          f"people; threshold {threshold['value']:.4f} ({threshold['source']})")  # fmt: skip
    print(
        f"{'known set':<10} {'AUROC':>7} {'TAR@1%':>8} {'TAR@0.1%':>9} {'open-acc':>9} {'ECE':>7}"
    )
    for config, entry in results["configs"].items():
        tar = entry["tar_at_far"]
        print(
            f"{config:<10} {entry['auroc'][threshold['score']]:7.4f} {100 * tar['0.01']['tar']:7.2f}% "
            f"{100 * tar['0.001']['tar']:8.2f}% "
            f"{100 * entry['open_set_accuracy']['accuracy']:8.2f}% "
            f"{entry['ece']['after_temperature']:7.4f}"
        )
    print(f"{'condition':<10} {'n':>5} {'top-1':>8} {'accepted':>9}")
    for condition, row in results["per_condition"].items():
        top1 = "-" if row["top1_accuracy"] is None else f"{100 * row['top1_accuracy']:.2f}%"
        print(f"{condition:<10} {row['n']:>5} {top1:>8} {100 * row['accepted']:8.2f}%")
