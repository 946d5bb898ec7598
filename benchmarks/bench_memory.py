"""Memory: peak RSS of `koin prepare` and of `train.py` epochs at 1k, 10k and 100k images.

Each size runs the real commands, each in a fresh subprocess:

    koin prepare RAW PREPARED
    python train.py --dataset_name PREPARED --model_name_or_path vit-tiny --num_train_epochs 1 ...
    python train.py ... (the same again)

The first train.py run also converts the parquet files into datasets' Arrow cache (a one-off
of the first `load_dataset`); the second finds the cache and memory-maps it, as every later run
of a user does. Both are reported.

and records, per command: the kernel's peak resident set of the command's process (VmHWM, read by
the process itself at exit) and, sampled every 50 ms from /proc, the peaks of the process tree's
anonymous memory (heap: what cannot be given back) and file-backed memory (shared libraries and
memory-mapped Arrow/parquet pages, which the kernel can drop at any time). Target: flat in the
dataset size, and under 3 GB.

The raw trees are cheap: a few hundred distinct small synthetic photos (64x80 JPEG, `koin synth
--image-size 64x80`) hard-linked (copied where links are impossible) into as many paths as the
size needs, in the raw KoIn layout. Duplicate pixels do not matter here: every path is decoded,
stored and trained on as its own image. `--photo-size 256x320` makes the photos as large as
`koin prepare` stores real ones (shorter side 256), so the data weighs what a real KoIn's does:
that is where memory-mapped pages would show if anything kept them.

    python benchmarks/bench_memory.py                       # 1,000 / 10,000 / 100,000 images
    python benchmarks/bench_memory.py --sizes 1000 10000    # a subset
    python benchmarks/bench_memory.py --photo-size 256x320  # real-size stored images
    python benchmarks/bench_memory.py --quick
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import TreePeaks, base_parser, machine_description, synthetic_raw, work_dir

from koin_hf.data.mapped_pages import SWITCH_VARIABLE

REPO = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 3 * 2**30
PREPARE, TRAIN_FIRST, TRAIN_WARM = "koin prepare", "train.py, 1st run", "train.py, 2nd run"
RELEASE_ON, RELEASE_OFF = "page release on", "page release off"
FLAT_TOLERANCE = 1.25  # largest / smallest peak across sizes still called "flat"
CLASSES = 10


def raw_tree(pool: Path, destination: Path, images: int) -> Path:
    """The raw KoIn layout with `images` training photos, hard links into the distinct pool."""
    marker = destination / ".benchmark-complete"
    if marker.is_file() and marker.read_text() == f"{images}":
        return destination
    shutil.rmtree(destination, ignore_errors=True)
    (destination / "normal_cases" / "train").mkdir(parents=True)
    shutil.copy(pool / "classes.csv", destination / "classes.csv")
    for class_dir in sorted((pool / "normal_cases" / "train").iterdir()):
        sources = sorted(class_dir.glob("*.jpg"))
        target = destination / "normal_cases" / "train" / class_dir.name
        target.mkdir()
        label = int(class_dir.name)
        count = images // CLASSES + (1 if label < images % CLASSES else 0)
        for index in range(count):
            source, path = sources[index % len(sources)], target / f"img_{index:06d}.jpg"
            try:
                os.link(source, path)
            except OSError:  # another file system, or links not allowed
                shutil.copyfile(source, path)
    marker.write_text(f"{images}")
    return destination


# Runs the real command inside a fresh interpreter and, at exit, records its own VmHWM: the peak
# resident set of this process since exec. (ru_maxrss is no good here: on Linux it keeps the RSS
# of the parent at spawn time, so a benchmark that imported torch would "measure" itself.)
RUNNER = """
import atexit, json, runpy, sys
out, kind, target, *rest = sys.argv[1:]
def report():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) * 1024
    with open(out, "w") as handle:
        json.dump(fields, handle)
atexit.register(report)
sys.argv = [target, *rest]
if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
"""


def measure(
    kind: str, target: str, arguments: list[str], log_path: Path, env: dict[str, str]
) -> dict[str, float]:
    """Run one command in a fresh process; its peak memory and wall time.

    `kind` is "module" (python -m TARGET) or "path" (python TARGET).
    """
    report = log_path.with_suffix(".memory.json")
    report.unlink(missing_ok=True)
    command = [sys.executable, "-c", RUNNER, str(report), kind, target, *arguments]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        with TreePeaks(process.pid) as peaks:
            process.wait()
    seconds = time.perf_counter() - started
    if process.returncode != 0 or not report.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{target} {' '.join(arguments)} failed ({process.returncode}):\n{tail}")
    final = json.loads(report.read_text())
    return {
        "hwm": final["VmHWM"],
        "anon": max(peaks.anon, final["RssAnon"]),
        "file": max(peaks.file, final["RssFile"]),
        "seconds": seconds,
    }


def run_size(
    images: int, pool: Path, root: Path, train_args: list[str], release_rounds: int = 0
) -> dict[str, dict]:
    raw = raw_tree(pool, root / f"memory-raw-{images}-{pool.name}", images)
    scratch = Path(tempfile.mkdtemp(prefix=f"memory-{images}-", dir=root))
    env = dict(
        os.environ, HF_DATASETS_CACHE=str(scratch / "hf-datasets-cache"), TQDM_MININTERVAL="5"
    )

    def train(run_name: str, run_env: dict[str, str]) -> dict[str, float]:
        return measure(
            "path",
            str(REPO / "train.py"),
            ["--dataset_name", str(prepared_dir), "--output_dir", str(scratch / run_name)]
            + train_args,
            root / f"memory-{images}-{run_name}.log",
            run_env,
        )

    try:
        prepared_dir = scratch / "prepared"
        prepare = measure(
            "module",
            "koin_hf.cli",
            ["prepare", str(raw), str(prepared_dir)],
            root / f"memory-{images}-prepare.log",
            env,
        )
        prepared_bytes = sum(p.stat().st_size for p in prepared_dir.rglob("*.parquet"))
        # The first run converts the parquet files into datasets' Arrow cache; the second finds
        # the cache and only memory-maps it, which is what every later run of a user sees.
        runs = {TRAIN_FIRST: train("train", env), TRAIN_WARM: train("train-warm", env)}
        # What releasing memory-mapped pages (koin_hf/mapped_pages.py) costs and saves: warm runs
        # with it on and off, alternating which goes first.
        for round_index in range(release_rounds):
            order = (RELEASE_ON, RELEASE_OFF) if round_index % 2 == 0 else (RELEASE_OFF, RELEASE_ON)
            for name in order:
                switch = {SWITCH_VARIABLE: "1" if name == RELEASE_ON else "0"}
                result = train(f"train-{name.split()[-1]}-{round_index}", env | switch)
                runs.setdefault(name, {"rounds": []})["rounds"].append(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    prepare["parquet_mib"] = prepared_bytes / 2**20
    return {PREPARE: prepare, **runs}


def print_release_comparison(images: int, runs: dict[str, dict]) -> None:
    on, off = runs[RELEASE_ON]["rounds"], runs[RELEASE_OFF]["rounds"]
    seconds_on = statistics.median(r["seconds"] for r in on)
    seconds_off = statistics.median(r["seconds"] for r in off)
    print(f"\npage release at {images:,} images, warm train.py runs, {len(on)} alternating rounds:")
    for name, rounds in ((RELEASE_ON, on), (RELEASE_OFF, off)):
        print(
            f"  {name:<16} peak RSS {' '.join(_mib(r['hwm']) for r in rounds)} MiB, "
            f"file {' '.join(_mib(r['file']) for r in rounds)} MiB, "
            f"seconds {' '.join(format(r['seconds'], '.1f') for r in rounds)}"
        )
    print(
        f"  time with / without: {seconds_on / seconds_off:.3f} (medians {seconds_on:.1f} s / "
        f"{seconds_off:.1f} s); peak RSS with / without: "
        f"{statistics.median(r['hwm'] for r in on) / statistics.median(r['hwm'] for r in off):.3f}"
    )


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--distinct", type=int, default=300, help="distinct photos in the pool")
    parser.add_argument(
        "--photo-size", default="64x80", help="WxH of the photos (256x320: stored real-size)"
    )
    parser.add_argument("--model", default="vit-tiny", help="--model_name_or_path for train.py")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--release-rounds",
        type=int,
        default=0,
        help="at the largest size, also time warm runs with page release on and off, N rounds",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.distinct = [40], 20
    print(machine_description())
    root = work_dir(args.work_dir)
    pool = synthetic_raw(
        root,
        f"memory-pool-{args.distinct}-{args.photo_size}",
        num_classes=CLASSES,
        train_per_class=max(1, args.distinct // CLASSES),
        image_size=args.photo_size,
    )
    train_args = [
        "--model_name_or_path",
        args.model,
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--per_device_eval_batch_size",
        str(2 * args.batch_size),
        "--eval_config_names",
        "normal",
        "--logging_steps",
        "100",
    ]
    print(
        f"\nraw trees: {args.distinct} distinct {args.photo_size} JPEG photos hard-linked into N paths, "
        f"{CLASSES} classes; train.py {' '.join(train_args)} (15% of train held out for "
        f"validation, scored at the epoch end)\n"
    )
    header = (
        f"{'images':>8}  {'command':<18} {'peak RSS MiB':>12} {'anon MiB':>9} "
        f"{'file MiB':>9} {'seconds':>8} {'images/s':>9} {'data MiB':>9}"
    )
    print(header)
    measured: dict[int, dict[str, dict]] = {}
    for images in args.sizes:
        rounds = args.release_rounds if images == max(args.sizes) else 0
        measured[images] = run_size(images, pool, root, train_args, rounds)
        for command in (PREPARE, TRAIN_FIRST, TRAIN_WARM):
            numbers = measured[images][command]
            print(
                f"{images:>8,}  {command:<18} {_mib(numbers['hwm']):>12} "
                f"{_mib(numbers['anon']):>9} {_mib(numbers['file']):>9} "
                f"{numbers['seconds']:>8.1f} {images / numbers['seconds']:>9,.0f} "
                f"{measured[images][PREPARE]['parquet_mib']:>9,.0f}",
                flush=True,
            )
    print(
        "\n(peak RSS: the command's own VmHWM; anon: heap, what memory pressure cannot take back;"
        " file: shared libraries and memory-mapped dataset pages, which the kernel drops at will;"
        " data: the prepared parquet)"
    )
    for command in (PREPARE, TRAIN_FIRST, TRAIN_WARM):
        peaks = [measured[n][command]["hwm"] for n in args.sizes]
        anon = [measured[n][command]["anon"] for n in args.sizes]
        growth, anon_growth = max(peaks) / min(peaks), max(anon) / max(1, min(anon))
        flat = growth <= FLAT_TOLERANCE
        under = max(peaks) < LIMIT_BYTES
        print(
            f"{command}: peak RSS {_mib(min(peaks))}-{_mib(max(peaks))} MiB over "
            f"{min(args.sizes):,}-{max(args.sizes):,} images (largest/smallest {growth:.2f}, "
            f"anonymous {anon_growth:.2f}): "
            f"{'FLAT' if flat else 'GROWS'} (target <= {FLAT_TOLERANCE}), "
            f"{'MET' if under else 'MISSED'} (target < 3 GiB)"
        )
    if args.release_rounds:
        largest = max(args.sizes)
        print_release_comparison(largest, measured[largest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
