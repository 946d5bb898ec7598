"""Python side of gpu_check.sh: its inputs, its in-process measurements and its summary.

    python benchmarks/gpu_check.py inputs WORK [--tiny]
        a random-init ViT checkpoint folder (WORK/model: ViT-B/16 at 224 from ViTConfig's
        defaults, or with --tiny a 2-layer ViT at 32 px) labelled with the classes of a prepared
        synthetic KoIn (WORK/data, `koin synth` + `koin prepare`); nothing is downloaded.
    python benchmarks/gpu_check.py launch-result NAME OUTPUT_DIR WORK
        steps/s and images/s of a finished train.py run, from its all_results.json.
    python benchmarks/gpu_check.py throughput NAME WORK --data real|tensors [--warmup N] -- ARGS
        the Trainer train.py builds from train.py's ARGS (same model and collator), fed either the real
        training data path (prepared parquet, koin-hf's decode and augmentation in DataLoader
        workers) or pre-made normalised tensors held in memory; steady-state images/s from the
        time from the end of the warm-up steps (which include torch.compile's compilation, reported
        apart as the first step's time) to the end of the last step.
    python benchmarks/gpu_check.py summary WORK
        every part's numbers, the ratios, and the parts that failed.

Each measurement writes WORK/results/NAME.json; gpu_check.sh writes NAME.failed for a part
that failed, so the summary names it rather than stopping.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import IMAGENET_MEAN, IMAGENET_STD, TRAINING_LOOP_ONLY, prepared, synthetic_raw

from koin_hf.runtime import configure_process

# (classes, train photos per class, test photos per class): sized so an epoch is a few hundred
# GPU steps' worth of decoding, generated in seconds; the tiny set only has to run.
DATASET = {"full": (50, 100, 2), "tiny": (4, 6, 2)}


def _results(work: Path) -> Path:
    folder = work / "results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save(work: Path, name: str, numbers: dict) -> None:
    (_results(work) / f"{name}.json").write_text(json.dumps(numbers, indent=1))


def make_inputs(work: Path, tiny: bool) -> None:
    classes, train, test = DATASET["tiny" if tiny else "full"]
    raw = synthetic_raw(
        work, "raw", num_classes=classes, train_per_class=train, test_per_class=test
    )
    data = prepared(raw, work / "data")
    configure_process()  # before torch loads, as train.py does
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from koin_hf.data.loading import load_prepared

    names = load_prepared(data, "normal", split="train").features["label"].names
    if tiny:
        size = 32
        config = ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=size,
            patch_size=8,
        )
    else:
        config = ViTConfig()  # the defaults are ViT-B/16 at 224: 768 wide, 12 layers, 12 heads
        size = config.image_size
    config.id2label = dict(enumerate(names))
    config.label2id = {label: index for index, label in enumerate(names)}
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    model.save_pretrained(work / "model")
    processor = ViTImageProcessor(
        size={"height": size, "width": size}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    processor.save_pretrained(work / "model")
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"model: {work / 'model'}: random-init ViT{'-tiny' if tiny else '-B/16'} at {size} px, "
        f"{parameters:.1f} M parameters, {len(names)} classes\n"
        f"data: {data}: {classes} classes x {train} synthetic training photos (prepared)"
    )


def launch_result(name: str, output_dir: Path, work: Path) -> None:
    metrics = json.loads((output_dir / "all_results.json").read_text())
    numbers = {
        "steps_per_second": metrics["train_steps_per_second"],
        "images_per_second": metrics["train_samples_per_second"],
        "seconds": metrics["train_runtime"],
    }
    _save(work, name, numbers)
    print(
        f"{name}: {numbers['steps_per_second']:.2f} steps/s, {numbers['images_per_second']:,.1f} "
        f"images/s (all processes) over {numbers['seconds']:.1f} s of training (Trainer's "
        "train_runtime: first steps and DataLoader start-up included)"
    )


def throughput(name: str, work: Path, data_kind: str, warmup: int, train_args: list[str]) -> None:
    configure_process()  # before torch loads, as train.py does
    import datasets
    import torch
    from transformers import TrainerCallback

    from koin_hf.data import transforms
    from koin_hf.training.arguments import parse_arguments
    from koin_hf.training.run import _prepare_model, build_trainer
    from koin_hf.training.splits import load_splits

    with tempfile.TemporaryDirectory() as output_dir:
        model_args, data_args, training_args = parse_arguments(
            [
                *train_args,
                "--output_dir",
                output_dir,
                *TRAINING_LOOP_ONLY,
            ]
        )
        _, names, train, _ = load_splits(data_args, training_args)
        model, processor, _, _ = _prepare_model(model_args, names, training_args.seed)
        clock = transforms.AugmentationClock(training_args.seed)
        if data_kind == "real":  # what run_training does to the train split
            image, label = data_args.image_column_name, data_args.label_column_name
            train = train.cast_column(image, datasets.Image(decode=False))
            train = transforms.apply_transform(
                train, transforms.make_train_transform(processor, image, label, clock=clock)
            )
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_training_overhead import PremadeBatches

            size = model.config.image_size
            train = PremadeBatches(len(train), size)
            train.labels %= len(names)
            # Nothing to decode: the main process indexes the tensors (no worker round trip).
            training_args.dataloader_num_workers = 0
        ends: list[float] = []

        class StepClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                # Wait for the GPU only where the timing starts and ends: a wait at every step
                # would stop the host from queueing the next step while this one runs.
                if torch.cuda.is_available() and state.global_step in (warmup + 1, state.max_steps):
                    torch.cuda.synchronize()
                ends.append(time.perf_counter())

        trainer = build_trainer(
            model, processor, training_args, train, None, clock, extra_callbacks=[StepClock()]
        )
        started = time.perf_counter()
        trainer.train()
    steps = len(ends)
    if steps < warmup + 2:
        raise SystemExit(f"{name}: only {steps} steps ran; need more than {warmup + 1}")
    batch = training_args.per_device_train_batch_size * training_args.world_size
    timed = ends[warmup:]
    numbers = {
        "images_per_second": batch * (len(timed) - 1) / (timed[-1] - timed[0]),
        "seconds_per_step": (timed[-1] - timed[0]) / (len(timed) - 1),
        "first_step_seconds": ends[0] - started,
        "warmup_steps": warmup,
        "timed_steps": len(timed) - 1,
        "workers": training_args.dataloader_num_workers,
        "compile": bool(training_args.torch_compile),
    }
    _save(work, name, numbers)
    print(
        f"{name}: {numbers['images_per_second']:,.1f} images/s, "
        f"{numbers['seconds_per_step'] * 1000:.1f} ms/step (steady state: {len(timed) - 1} steps "
        f"after {warmup} warm-up), first step {numbers['first_step_seconds']:.1f} s, "
        f"{numbers['workers']} DataLoader workers, torch.compile "
        f"{'on' if numbers['compile'] else 'off'}"
    )


def _ratio(results: dict, top: str, bottom: str, label: str, key: str) -> str:
    if top in results and bottom in results:
        return f"{label}: {results[top][key] / results[bottom][key]:.3f}"
    return f"{label}: n/a ({top} or {bottom} did not run)"


def summary(work: Path) -> int:
    folder = _results(work)
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    failed = {p.stem: p.read_text().strip() for p in sorted(folder.glob("*.failed"))}
    print("\n== summary ==")
    for name, numbers in results.items():
        shown = ", ".join(
            f"{key} {value:,.3f}" if isinstance(value, float) else f"{key} {value}"
            for key, value in numbers.items()
        )
        print(f"{name}: {shown}")
    for line in (
        _ratio(
            results,
            "data-path-real",
            "data-path-tensors",
            "data path / in-memory tensors, images/s",
            "images_per_second",
        ),
        _ratio(
            results,
            "compile-on",
            "data-path-tensors",
            "torch.compile on / off, images/s (in-memory tensors)",
            "images_per_second",
        ),
        _ratio(
            results,
            "launch-ddp",
            "launch-single",
            "all-GPU DDP / single-GPU train.py, images/s",
            "images_per_second",
        ),
    ):
        print(line)
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    print(f"parts failed: {len(failed)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inputs = commands.add_parser("inputs")
    inputs.add_argument("work", type=Path)
    inputs.add_argument("--tiny", action="store_true")
    launch = commands.add_parser("launch-result")
    launch.add_argument("name")
    launch.add_argument("output_dir", type=Path)
    launch.add_argument("work", type=Path)
    speed = commands.add_parser("throughput")
    speed.add_argument("name")
    speed.add_argument("work", type=Path)
    speed.add_argument("--data", choices=["real", "tensors"], required=True)
    speed.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    last = commands.add_parser("summary")
    last.add_argument("work", type=Path)
    argv = list(sys.argv[1:] if argv is None else argv)
    # `throughput ... -- TRAIN_ARGS`: everything after -- goes to train.py's argument parser.
    split = argv.index("--") if "--" in argv else len(argv)
    args, train_args = parser.parse_args(argv[:split]), argv[split + 1 :]
    if args.command == "inputs":
        make_inputs(args.work, args.tiny)
    elif args.command == "launch-result":
        launch_result(args.name, args.output_dir, args.work)
    elif args.command == "throughput":
        throughput(args.name, args.work, args.data, args.warmup, train_args)
    else:
        return summary(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
