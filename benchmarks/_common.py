"""Helpers shared by the benchmark scripts: the machine, interleaved timing, cached inputs.

Benchmarks here compare contenders measured side by side in one run. Shared machines are noisy,
so contenders run in alternating rounds (the order rotates every round, so none always goes
first) and each reports the median of its rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from koin_hf.flags import KoinArgumentParser

T = TypeVar("T")

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
NUM_CLASSES = 10


# train.py flags that leave only the training loop: no evaluation, no checkpoints, no trackers.
# Benchmarks that time steps add these so saving and scoring never land inside the timed part.
TRAINING_LOOP_ONLY = [
    "--eval_strategy",
    "no",
    "--save_strategy",
    "no",
    "--load_best_model_at_end",
    "false",
    "--report_to",
    "none",
]


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = KoinArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that the benchmark runs (smoke)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where generated inputs are kept between runs (default: $KOIN_HF_CACHE/benchmarks)",
    )
    return parser


def work_dir(path: Path | None) -> Path:
    if path is None:
        from koin_hf.data.default_dataset import default_cache_dir

        path = default_cache_dir() / "benchmarks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        return "RAM unknown"


def load_average() -> str:
    """1, 5 and 15-minute load averages: above the core count, other work shared the CPU."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine_description() -> str:
    """One paragraph naming the machine and the library versions the numbers came from."""
    import datasets
    import PIL
    import torch
    import torchvision
    import transformers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {_cpu_model()}, {cores} usable cores, {_memory_gib()}, "
        f"load average at start {load_average()}\n"
        f"software: Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), torchvision {torchvision.__version__}, "
        f"transformers {transformers.__version__}, datasets {datasets.__version__}, "
        f"Pillow {PIL.__version__}"
    )


def interleaved(
    contenders: dict[str, Callable[[], T]], rounds: int, log: Callable[[str], None] = print
) -> dict[str, list[T]]:
    """Run every contender once per round, rotating the order each round; all results by name."""
    names = list(contenders)
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            result = contenders[name]()
            results[name].append(result)
            log(f"  round {round_index + 1}/{rounds}  {name:<28} {describe(result)}")
    return results


def describe(result: Any) -> str:
    if isinstance(result, float):
        return f"{result:,.1f}"
    if isinstance(result, list) and result and all(isinstance(x, float) for x in result):
        return f"median {median(result):.3f} of {len(result)}: " + " ".join(
            f"{x:.3f}" for x in result
        )
    return str(result)


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round-by-round ratios of two contenders' results.

    Both ran back to back in the same round, so load from elsewhere that comes and goes (a
    neighbour's job can make a step 10x slower on a shared 2-core machine) mostly cancels out;
    the median of these is the figure to judge by.
    """
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float], fmt: str = ",.1f") -> str:
    """min-max of repeated measurements, to show how noisy the machine was."""
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def verdict(ratio: float, target: float, at_least: bool = True) -> str:
    met = ratio >= target if at_least else ratio <= target
    sign = ">=" if at_least else "<="
    return f"{'MET' if met else 'MISSED'} (target {sign} {target:g})"


class Stopwatch:
    """`with Stopwatch() as watch: ...; watch.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def synthetic_raw(
    root: Path,
    name: str,
    *,
    num_classes: int,
    train_per_class: int,
    test_per_class: int = 0,
    image_size: str = "small",
    quality: int = 90,
    workers: int | None = None,
) -> Path:
    """A synthetic raw KoIn tree, generated once and reused while the arguments stay the same."""
    from koin_hf.synthetic.writer import generate_synthetic_koin

    spec = f"{num_classes}x{train_per_class}+{test_per_class} {image_size} q{quality}"
    folder = root / name
    marker = folder / ".benchmark-complete"
    if marker.is_file() and marker.read_text() == spec:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    generate_synthetic_koin(
        folder,
        num_classes=num_classes,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        hard_per_class=0,
        group_per_class=0,
        image_size=image_size,
        quality=quality,
        workers=workers,
        progress=True,
    )
    marker.write_text(spec)
    return folder


def prepared(raw: Path, out: Path, image_size: int = 256) -> Path:
    """`koin prepare RAW OUT` once; reused while the raw tree is unchanged."""
    from koin_hf.data.prepare import prepare_koin

    marker = out / ".benchmark-source"
    stamp = f"{raw} {(raw / '.benchmark-complete').stat().st_mtime_ns} {image_size}"
    if marker.is_file() and marker.read_text() == stamp:
        return out
    shutil.rmtree(out, ignore_errors=True)
    prepare_koin(raw, out, image_size=image_size, verbose=False)
    marker.write_text(stamp)
    return out


def random_vit_checkpoint(
    folder: Path, quick: bool, label_names: Sequence[str] | None = None
) -> tuple[Path, int, str]:
    """A ViT-S/16 at 224 (with --quick, a tiny ViT) with random weights, saved like a checkpoint.

    Real-size architecture, random weights: timing does not depend on the weights' values, and
    nothing needs downloading. Saved once and reused while the label names stay the same.
    """
    import json

    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    names = list(label_names or [f"class-{i}" for i in range(NUM_CLASSES)])
    if quick:
        size, name = 32, "vit-tiny-random"
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
        config = ViTConfig(**sizes, intermediate_size=37, image_size=size, patch_size=8)
    else:
        size, name = 224, "vit-s16-random"
        sizes = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6)
        config = ViTConfig(**sizes, intermediate_size=1536, image_size=size, patch_size=16)
    config.id2label = dict(enumerate(names))
    config.label2id = {label: index for index, label in enumerate(names)}
    path = folder / name
    saved = path / "config.json"
    saved_names = None
    if saved.is_file() and (path / "model.safetensors").is_file():
        saved_names = list(json.loads(saved.read_text())["id2label"].values())
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    if saved_names != names:
        model.save_pretrained(path)
        ViTImageProcessor(
            size={"height": size, "width": size}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
        ).save_pretrained(path)
    parameters = sum(p.numel() for p in model.parameters())
    return path, size, f"ViT {'tiny' if quick else 'S/16'} ({parameters / 1e6:.1f} M parameters)"


def tree_memory(pid: int) -> tuple[int, int, int]:
    """Resident bytes of a process and its descendants, from /proc: (anonymous, file-backed,
    the largest single process's peak so far (VmHWM), as `/usr/bin/time` reports it)."""
    import psutil

    anon = file = largest_peak = 0
    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    for process in processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("RssAnon:"):
                anon += int(line.split()[1]) * 1024
            elif line.startswith(("RssFile:", "RssShmem:")):
                file += int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                largest_peak = max(largest_peak, int(line.split()[1]) * 1024)
    return anon, file, largest_peak


class TreePeaks:
    """Samples a process tree's resident memory in a thread until the block ends.

    with TreePeaks(process.pid, interval=0.05) as peaks:
        process.wait()
    peaks.anon, peaks.file, peaks.total   # bytes: the highest seen of each
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import threading

        self.pid, self.interval = pid, interval
        self.anon = self.file = self.total = self.largest_process = 0
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._finished.is_set():
            anon, file, largest_peak = tree_memory(self.pid)
            self.anon, self.file = max(self.anon, anon), max(self.file, file)
            self.largest_process = max(self.largest_process, largest_peak)
            self.total = max(self.total, anon + file)
            self._finished.wait(self.interval)

    def __enter__(self) -> TreePeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finished.set()
        self._thread.join()
