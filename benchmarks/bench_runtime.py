"""Runtime set-up: koin_hf.runtime's allocator and thread waits, on and off, in fresh processes.

koin_hf.runtime.configure_process() (called first by train.py and `koin`) keeps large blocks in
glibc's heap instead of mmap/munmap-ing them every layer, and makes OpenMP threads sleep rather
than spin while waiting. KOIN_HF_RUNTIME=off switches it off. Three sections:

a. allocator:      a bare forward of EfficientNet-Lite0 (`load_model_and_processor("lite0")`,
                   ImageNet weights, offline) on random batches, runtime off vs on: images/s,
                   user and sys CPU seconds, minor page faults. Target: sys <= 10% of user, on.
b. busy neighbour: one training step of lite0 (forward, backward, fused AdamW) on random batches,
                   median step time idle vs with one busy process (`while True: pass`, started
                   and killed here) beside it, runtime on and off. Target: busy / idle <= 2.5, on.
                   `--thread-variants` adds other thread settings (one thread, active waits,
                   a short spin, one inter-op thread, the allocator alone) for comparison.
c. koin evaluate:  the real command (`python -m koin_hf.cli evaluate MODEL --dataset DIR`) on a
                   saved lite0 model folder and a prepared synthetic test set, vs the bare forward
                   of the same folder loaded the way evaluate loads it, on the same images already
                   pre-processed; runtime on. Its scoring loop (decode, pre-process, forward) is
                   timed inside the real command; end to end (start-up, model load, metrics and
                   reports included) is shown too. Targets: scoring >= 0.9x the bare forward's
                   images/s; sys <= 10% of user.

Every measurement runs in a fresh interpreter (the set-up is per process, and OpenMP reads its
wait policy when torch loads); this driver never imports torch. User, sys and minor faults are
the child's own (with its reaped children, e.g. DataLoader workers), from os.wait4, and,
measured inside it, those of its timed loop alone; peak RSS is the child's VmHWM.
GLIBC_TUNABLES, OMP_WAIT_POLICY and GOMP_SPINCOUNT are removed from the children's environment,
so only the contender's setting counts. Contenders run in rotating order, round after round;
ratios are taken round by round.

    python benchmarks/bench_runtime.py
    python benchmarks/bench_runtime.py --sections b --thread-variants
    python benchmarks/bench_runtime.py --quick
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    base_parser,
    interleaved,
    load_average,
    median,
    paired_ratios,
    prepared,
    spread,
    synthetic_raw,
    verdict,
    work_dir,
)

SYS_TARGET = 0.10  # sys / user
BUSY_TARGET = 2.5  # busy / idle step time
EVALUATE_TARGET = 0.9  # koin evaluate / bare forward, images/s
CLASSES = 10
# What the contenders set themselves; inherited values would blur the comparison.
RUNTIME_VARIABLES = ("KOIN_HF_RUNTIME", "GLIBC_TUNABLES", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
BENCHMARK = Path(__file__).resolve()
REPO = BENCHMARK.parents[1]


@dataclass
class Setting:
    """How one child process runs: the runtime switch, extra variables, torch thread counts."""

    runtime: str = "on"
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None  # torch.set_num_threads
    interop_threads: int | None = None  # torch.set_num_interop_threads


def thread_variants() -> dict[str, Setting]:
    """Other thread settings for section b, to compare with the runtime's passive waits."""
    from koin_hf.runtime import _TUNABLES  # glibc's heap thresholds, as the runtime sets them

    return {
        "on, 1 torch thread": Setting(threads=1),
        "on, OMP_WAIT_POLICY=ACTIVE": Setting(env={"OMP_WAIT_POLICY": "ACTIVE"}),
        "on, GOMP_SPINCOUNT=10000": Setting(env={"GOMP_SPINCOUNT": "10000"}),
        "on, 1 inter-op thread": Setting(interop_threads=1),
        # The heap thresholds from process start, libgomp's default (spinning) waits.
        "allocator only (default waits)": Setting("off", {"GLIBC_TUNABLES": _TUNABLES}),
    }


@dataclass
class Measurement:
    """What one child process reported, plus its rusage from os.wait4."""

    result: dict
    wall: float
    user: float
    sys: float
    minor_faults: int

    @property
    def sys_share(self) -> float:
        return self.sys / self.user if self.user else float("nan")

    def __str__(self) -> str:
        shown = []
        if "images_per_second" in self.result:
            shown.append(f"{self.result['images_per_second']:7.1f} img/s")
        if "step_seconds" in self.result:
            steps = self.result["step_seconds"]
            shown.append(f"median step {median(steps):6.2f} s ({len(steps)} steps)")
        return "  ".join(
            shown
            + [
                f"user {self.user:6.1f} s",
                f"sys {self.sys:6.1f} s",
                f"{self.minor_faults / 1e6:6.2f} M faults",
                f"peak RSS {self.result.get('peak_rss', 0) / 2**20:,.0f} MiB",
            ]
        )


def child_environment(setting: Setting) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RUNTIME_VARIABLES}
    env.update(
        KOIN_HF_RUNTIME=setting.runtime,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
    )
    env.update(setting.env)
    return env


def run_child(
    command: list[str], setting: Setting, log: Path, busy_neighbour: bool = False
) -> Measurement:
    """Run one command in a fresh process; its JSON result, wall time and own rusage.

    The command writes its result as JSON to the path passed in KOIN_BENCH_RESULT.
    """
    result_path = log.with_suffix(".json")
    result_path.unlink(missing_ok=True)
    env = child_environment(setting) | {"KOIN_BENCH_RESULT": str(result_path)}
    neighbour = None
    if busy_neighbour:
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        started = time.perf_counter()
        with open(log, "w") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )
            # wait4: this child's own CPU time and faults, not the neighbour's.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if process.returncode != 0 or not result_path.is_file():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{tail}")
    return Measurement(
        json.loads(result_path.read_text()),
        wall,
        usage.ru_utime,
        usage.ru_stime,
        usage.ru_minflt,
    )


def child_task(task: str, setting: Setting, log: Path, busy: bool = False, **params) -> Measurement:
    """This file's own `--child` mode (below) running one task."""
    spec = {"task": task, "setting": setting.__dict__, "params": params}
    command = [sys.executable, str(BENCHMARK), "--child", json.dumps(spec)]
    return run_child(command, setting, log, busy)


# The real `koin evaluate` command in a fresh interpreter, with its scoring loop timed. The wrapper
# calls configure_process() first, as `koin` does before any import of torch (the CLI's own call
# is then a no-op), so the import order the command sees is unchanged; evaluate_model's
# score_config (decode, pre-process, forward; the model is already loaded) is wrapped in a timer.
EVALUATE_WRAPPER = """
import atexit, json, os, runpy, sys, time
timing = {"score_seconds": 0.0, "images": 0}
def report():
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
    with open(os.environ["KOIN_BENCH_RESULT"], "w") as handle:
        json.dump({**timing, "peak_rss": peak}, handle)
atexit.register(report)
from koin_hf.runtime import configure_process
configure_process()
import koin_hf.evaluation.run as run
score_config = run.score_config
def timed(*args, **kwargs):
    start = time.perf_counter()
    scored = score_config(*args, **kwargs)
    timing["score_seconds"] += time.perf_counter() - start
    timing["images"] += len(scored.references)
    return scored
run.score_config = timed
sys.argv = ["koin", *sys.argv[1:]]
runpy.run_module("koin_hf.cli", run_name="__main__", alter_sys=True)
"""


# ---------------------------------------------------------------------------------------------
# The child side: runs in a fresh interpreter, configures the runtime before torch loads.


def _peak_rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def _usage() -> tuple[float, float, int]:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def _window(before: tuple[float, float, int]) -> dict:
    """User/sys seconds and minor faults of the timed part alone (the rest is start-up)."""
    after = _usage()
    return {
        "loop_user": after[0] - before[0],
        "loop_sys": after[1] - before[1],
        "loop_faults": after[2] - before[2],
    }


def _apply_threads(setting: dict) -> None:
    import torch

    if setting["interop_threads"]:
        torch.set_num_interop_threads(setting["interop_threads"])
    if setting["threads"]:
        torch.set_num_threads(setting["threads"])


def _save_model(prepared_dir: str, model_dir: str) -> dict:
    """A lite0 model folder labelled with the dataset's class names (evaluate matches by name)."""
    from koin_hf.data.loading import load_prepared
    from koin_hf.models.loading import load_model_and_processor

    names = load_prepared(prepared_dir, "normal", split="test").features["label"].names
    config = Path(model_dir) / "config.json"
    saved = json.loads(config.read_text()).get("id2label") if config.is_file() else None
    if saved is None or list(saved.values()) != list(names):
        model, processor, _ = load_model_and_processor("lite0", list(names), seed=0)
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    return {}


def _forward(params: dict) -> dict:
    """Bare forward passes: lite0 on random batches, or a saved folder on pre-processed images."""
    import torch

    batch = params["batch_size"]
    if params.get("model_dir"):
        from koin_hf.data.loading import load_prepared
        from koin_hf.evaluation.scoring import ImageScorer

        scorer = ImageScorer(params["model_dir"], device="cpu")
        test = load_prepared(params["prepared_dir"], "normal", split="test")
        images = len(test)
        batches = [
            scorer.preprocess(test[start : start + batch]["image"])
            for start in range(0, images, batch)
        ]
        forward, warmup = scorer.forward, 0  # cold first batch, like evaluate's
    else:
        from koin_hf.models.loading import load_model_and_processor

        names = [f"class-{i}" for i in range(CLASSES)]
        model = load_model_and_processor("lite0", names, seed=0)[0].eval()
        size = params["image_size"]
        count = max(1, params["images"] // batch)
        batches = [torch.randn(batch, 3, size, size) for _ in range(count)]
        images, warmup = count * batch, 1

        @torch.inference_mode()
        def forward(pixel_values):
            return model(pixel_values=pixel_values).logits

    for pixel_values in batches[:warmup]:
        forward(pixel_values)
    before = _usage()
    started = time.perf_counter()
    for pixel_values in batches:
        forward(pixel_values)
    seconds = time.perf_counter() - started
    return {"images": images, "images_per_second": images / seconds, **_window(before)}


def _train_steps(params: dict) -> dict:
    """Training steps of lite0 on one random batch: forward, backward, fused AdamW."""
    import torch

    from koin_hf.models.loading import load_model_and_processor

    names = [f"class-{i}" for i in range(CLASSES)]
    model = load_model_and_processor("lite0", names, seed=0)[0].train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=True)
    size, batch = params["image_size"], params["batch_size"]
    pixel_values = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, CLASSES, (batch,))

    def step() -> float:
        started = time.perf_counter()
        model(pixel_values=pixel_values, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    for _ in range(params["warmup"]):
        step()
    before = _usage()
    steps: list[float] = []
    # Stop early past the budget (at least 2 steps): a contended step can take a minute.
    while len(steps) < params["steps"] and (len(steps) < 2 or sum(steps) < params["budget"]):
        steps.append(step())
    return {"step_seconds": steps, "threads": torch.get_num_threads(), **_window(before)}


def child_main(spec_json: str) -> int:
    from koin_hf.runtime import configure_process

    configure_process()  # before torch loads, as every entry point does (no-op when off)
    spec = json.loads(spec_json)
    if spec["task"] == "describe":
        from _common import machine_description

        result = {"machine": machine_description()}
    elif spec["task"] == "save-model":
        result = _save_model(**spec["params"])
    else:
        _apply_threads(spec["setting"])
        result = (_forward if spec["task"] == "forward" else _train_steps)(spec["params"])
    result["peak_rss"] = _peak_rss()
    Path(os.environ["KOIN_BENCH_RESULT"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# The driver: sections, tables, ratios.


def _log(line: str) -> None:
    print(line, flush=True)


def _table(results: dict[str, list[Measurement]], rate: str) -> None:
    """One line per contender: medians over its rounds."""
    print(
        f"\n{'contender':<38} {rate:>13} {'user s':>7} {'sys s':>7} {'sys/user':>8} "
        f"{'M faults':>8} {'loop sys/user':>13} {'peak MiB':>8}"
    )
    for name, runs in results.items():
        if rate == "img/s":
            value = f"{median([r.result['images_per_second'] for r in runs]):,.1f}"
        else:
            value = f"{median([median(r.result['step_seconds']) for r in runs]):.2f}"
        loop = "-"
        if all("loop_user" in r.result for r in runs):
            shares = [r.result["loop_sys"] / max(r.result["loop_user"], 1e-9) for r in runs]
            loop = f"{median(shares):.3f}"
        print(
            f"{name:<38} {value:>13} {median([r.user for r in runs]):>7.1f} "
            f"{median([r.sys for r in runs]):>7.1f} {median([r.sys_share for r in runs]):>8.3f} "
            f"{median([r.minor_faults for r in runs]) / 1e6:>8.2f} {loop:>13} "
            f"{median([r.result['peak_rss'] for r in runs]) / 2**20:>8,.0f}"
        )
    print(
        "(medians of the rounds; user, sys, faults: the whole process, start-up and model load "
        "included; loop: the timed part alone)"
    )


def _ratio_line(label: str, ratios: list[float], target: float, at_least: bool) -> None:
    print(
        f"{label}: per round {' '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {median(ratios):.3f}  {verdict(median(ratios), target, at_least)}"
    )


def _sys_line(label: str, runs: list[Measurement]) -> None:
    shares = [r.sys_share for r in runs]
    _ratio_line(f"{label} sys / user (whole process)", shares, SYS_TARGET, at_least=False)
    if all("loop_user" in r.result for r in runs):
        shares = [r.result["loop_sys"] / max(r.result["loop_user"], 1e-9) for r in runs]
        _ratio_line(f"{label} sys / user (timed loop)", shares, SYS_TARGET, at_least=False)


def allocator_section(args, root: Path) -> None:
    print(
        f"\n== a. allocator: bare forward of EfficientNet-Lite0, batch {args.batch_size}, "
        f"{args.image_size} px, {max(1, args.images // args.batch_size) * args.batch_size} "
        f"images after 1 warm-up batch, {args.rounds} rounds; runtime off vs on =="
    )
    params = dict(batch_size=args.batch_size, image_size=args.image_size, images=args.images)
    on, off = "runtime on", "runtime off"
    results = interleaved(
        {
            off: lambda: child_task("forward", Setting("off"), root / "a-off.log", **params),
            on: lambda: child_task("forward", Setting("on"), root / "a-on.log", **params),
        },
        args.rounds,
        log=_log,
    )
    _table(results, "img/s")
    print(f"(load average now {load_average()})\n")
    rate = [r.result["images_per_second"] for r in results[on]]
    rate_off = [r.result["images_per_second"] for r in results[off]]
    print(
        f"img/s on / off: per round "
        f"{' '.join(f'{r:.2f}' for r in paired_ratios(rate, rate_off))}; "
        f"median {median(paired_ratios(rate, rate_off)):.2f}x"
    )
    faults = [r.result["loop_faults"] / r.result["images"] for r in results[on]]
    faults_off = [r.result["loop_faults"] / r.result["images"] for r in results[off]]
    print(
        f"minor faults per image in the timed loop: off {median(faults_off):,.0f}, "
        f"on {median(faults):,.0f}"
    )
    _sys_line("runtime off:", results[off])
    _sys_line("runtime on: ", results[on])


def busy_section(args, root: Path) -> None:
    print(
        f"\n== b. busy neighbour: lite0 training step (forward, backward, fused AdamW), batch "
        f"{args.train_batch_size}, {args.image_size} px, up to {args.steps} timed steps after "
        f"{args.warmup} warm-up (timed part capped at {args.step_budget:g} s), idle vs one busy "
        f"process beside it, {args.rounds} rounds =="
    )
    params = dict(
        batch_size=args.train_batch_size,
        image_size=args.image_size,
        steps=args.steps,
        warmup=args.warmup,
        budget=args.step_budget,
    )
    settings = {"runtime on": Setting("on"), "runtime off": Setting("off")}
    if args.thread_variants:
        settings |= thread_variants()
    contenders = {}
    for name, setting in settings.items():
        slug = "".join(c if c.isalnum() else "-" for c in name)
        for busy in (False, True):
            contenders[f"{name}, {'busy' if busy else 'idle'}"] = (
                lambda setting=setting, busy=busy, slug=slug: child_task(
                    "train", setting, root / f"b-{slug}-{busy}.log", busy, **params
                )
            )
    results = interleaved(contenders, args.rounds, log=_log)
    _table(results, "median s/step")
    print(f"(load average now {load_average()})\n")
    for name in settings:
        idle = [median(r.result["step_seconds"]) for r in results[f"{name}, idle"]]
        busy = [median(r.result["step_seconds"]) for r in results[f"{name}, busy"]]
        _ratio_line(f"busy / idle step time, {name}", paired_ratios(busy, idle), BUSY_TARGET, False)
    _sys_line("training, runtime on, idle:", results["runtime on, idle"])


def evaluate_section(args, root: Path, logs: Path) -> None:
    per_class = max(1, args.eval_images // CLASSES)
    name = f"raw-small-{CLASSES}x1+{per_class}"
    raw = synthetic_raw(
        root, name, num_classes=CLASSES, train_per_class=1, test_per_class=per_class
    )
    prepared_dir = prepared(raw, root / f"{name}-prepared")
    model_dir = root / f"lite0-{name}"
    save = dict(prepared_dir=str(prepared_dir), model_dir=str(model_dir))
    child_task("save-model", Setting("on"), logs / "save-model.log", **save)
    args.eval_images = per_class * CLASSES
    root = logs
    print(
        f"\n== c. koin evaluate vs bare forward: saved lite0 folder, {args.eval_images} prepared "
        f"test images, batch {args.eval_batch_size}, --num_workers {args.eval_workers}, "
        f"runtime on, {args.rounds} rounds =="
    )
    output_dir = Path(tempfile.mkdtemp(prefix="evaluate-", dir=root))
    evaluate_command = [
        sys.executable,
        "-c",
        EVALUATE_WRAPPER,
        "evaluate",
        str(model_dir),
        "--dataset",
        str(prepared_dir),
        "--configs",
        "normal",
        "--batch_size",
        str(args.eval_batch_size),
        "--output_dir",
        str(output_dir),
        "--no_plots",
        "--num_workers",
        str(args.eval_workers),
    ]
    bare, evaluate = "bare forward (same folder)", "koin evaluate"

    def run_evaluate() -> Measurement:
        measured = run_child(evaluate_command, Setting("on"), root / "c-evaluate.log")
        measured.result["images_per_second"] = (
            measured.result["images"] / measured.result["score_seconds"]
        )
        measured.result["end_to_end"] = measured.result["images"] / measured.wall
        return measured

    results = interleaved(
        {
            bare: lambda: child_task(
                "forward",
                Setting("on"),
                root / "c-bare.log",
                model_dir=str(model_dir),
                prepared_dir=str(prepared_dir),
                batch_size=args.eval_batch_size,
            ),
            evaluate: run_evaluate,
        },
        args.rounds,
        log=_log,
    )
    _table(results, "img/s")
    print(
        "(koin evaluate: img/s of its scoring loop, which decodes, pre-processes and runs the "
        "model; the bare forward gets the same images pre-processed beforehand)"
    )
    wall = [r.wall for r in results[evaluate]]
    end_to_end = [r.result["end_to_end"] for r in results[evaluate]]
    print(
        f"koin evaluate end to end (interpreter start, imports, model load, metrics, reports "
        f"included): {median(wall):.1f} s, {median(end_to_end):.1f} img/s "
        f"(range {spread(end_to_end)}); load average now {load_average()}\n"
    )
    scoring = [r.result["images_per_second"] for r in results[evaluate]]
    forward = [r.result["images_per_second"] for r in results[bare]]
    _ratio_line(
        "koin evaluate scoring / bare forward, img/s",
        paired_ratios(scoring, forward),
        EVALUATE_TARGET,
        True,
    )
    print(
        "koin evaluate end to end / bare forward, img/s: median "
        f"{median(paired_ratios(end_to_end, forward)):.3f} (start-up included; no target)"
    )
    _sys_line("koin evaluate", results[evaluate])


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"])
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per contender")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64, help="a: forward batch")
    parser.add_argument("--images", type=int, default=256, help="a: images timed per run")
    parser.add_argument("--train-batch-size", type=int, default=32, help="b: training batch")
    parser.add_argument("--steps", type=int, default=6, help="b: timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="b: untimed first steps")
    parser.add_argument(
        "--step-budget", type=float, default=90.0, help="b: stop timing a run after this many s"
    )
    parser.add_argument(
        "--thread-variants", action="store_true", help="b: also other thread settings"
    )
    parser.add_argument("--eval-images", type=int, default=320, help="c: test images")
    parser.add_argument("--eval-batch-size", type=int, default=32, help="c: the CLI's default")
    parser.add_argument(
        "--eval-workers", type=int, default=0, help="c: koin evaluate --num_workers (default 0)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch_size, args.images, args.train_batch_size = 1, 4, 8, 2
        args.image_size, args.steps, args.warmup, args.step_budget = 64, 2, 1, 10.0
        args.eval_images, args.eval_batch_size = 20, 8
    root = work_dir(args.work_dir)
    logs = Path(tempfile.mkdtemp(prefix="runtime-", dir=root))
    print(child_task("describe", Setting("on"), logs / "describe.log").result["machine"])
    print(f"logs of every child process: {logs}")
    if "a" in args.sections:
        allocator_section(args, logs)
    if "b" in args.sections:
        busy_section(args, logs)
    if "c" in args.sections:
        evaluate_section(args, root, logs)
    print(f"\n(load average at the end {load_average()})")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child_main(sys.argv[2]))
    sys.exit(main())
