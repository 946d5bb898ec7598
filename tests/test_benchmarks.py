"""Smoke tests: every benchmark in benchmarks/ runs end to end at a tiny size (`--quick`).

They check that the scripts still work against the current library (real prepare, real
DataLoaders, real Trainer, real evaluate_model/pipeline, real train.py subprocesses), not the
timings: those are recorded in benchmarks/RESULTS.md from full-size runs.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Benchmarks in --quick mode: real subprocesses, tens of seconds.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the generated inputs, shared by the benchmarks like a real cache."""
    return tmp_path_factory.mktemp("benchmarks")


def _run(name: str, work_dir: Path, monkeypatch, capsys, *extra: str) -> str:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(name)
    assert module.main(["--quick", "--work-dir", str(work_dir), *extra]) == 0
    return capsys.readouterr().out


def test_data_path_benchmark_compares_three_loaders(work_dir, monkeypatch, capsys):
    out = _run("bench_data_path", work_dir, monkeypatch, capsys)
    assert "one-off: koin prepare" in out
    for contender in (
        "koin-hf (prepared parquet)",
        "(a) torchvision ImageFolder",
        "(b) HF example",
    ):
        assert contender in out
    assert "koin-hf vs (a) torchvision ImageFolder:" in out
    assert "pays for itself after" in out


def test_training_overhead_benchmark_times_trainer_and_plain_loop(work_dir, monkeypatch, capsys):
    out = _run("bench_training_overhead", work_dir, monkeypatch, capsys)
    assert "Trainer optimizer: AdamW(fused=True)" in out  # the plain loop mirrors it
    assert "Trainer / plain (median of the rounds):" in out


def test_inference_benchmark_scores_with_evaluate_and_pipeline(work_dir, monkeypatch, capsys):
    out = _run("bench_inference", work_dir, monkeypatch, capsys)
    assert "koin evaluate (end to end) / bare forward:" in out
    assert "pipeline(batch_size) / bare forward:" in out


def test_memory_benchmark_measures_prepare_and_train_subprocesses(work_dir, monkeypatch, capsys):
    out = _run("bench_memory", work_dir, monkeypatch, capsys, "--release-rounds", "1")
    assert "koin prepare: peak RSS" in out
    assert "train.py, 1st run: peak RSS" in out
    assert "train.py, 2nd run: peak RSS" in out
    assert "page release on " in out and "page release off" in out
    assert "time with / without:" in out


def test_end_to_end_benchmark_runs_koin_and_the_recipe(work_dir, monkeypatch, capsys):
    out = _run("bench_end_to_end", work_dir, monkeypatch, capsys)
    for line in (
        "koin-hf / recipe (median of the rounds):",
        "koin-hf sys / user:",
        "koin-hf peak RSS:",
    ):
        assert line in out
    assert "normal top-1, koin-hf minus recipe:" in out


def test_runtime_benchmark_compares_settings_in_fresh_processes(work_dir, monkeypatch, capsys):
    out = _run("bench_runtime", work_dir, monkeypatch, capsys)
    assert out.startswith("machine: ")  # the machine first, from a child process
    for header in ("== a. allocator:", "== b. busy neighbour:", "== c. koin evaluate vs bare"):
        assert header in out
    assert "img/s on / off: per round" in out
    assert re.search(
        r"runtime on: +sys / user \(whole process\): .*(MET|MISSED) \(target <= 0.1\)", out
    )
    assert re.search(r"busy / idle step time, runtime on: .*(MET|MISSED) \(target <= 2.5\)", out)
    assert "busy / idle step time, runtime off:" in out
    assert re.search(
        r"koin evaluate scoring / bare forward, img/s: .*(MET|MISSED) \(target >= 0.9\)", out
    )
    assert re.search(r"koin evaluate sys / user \(whole process\): .*(MET|MISSED)", out)


def test_gpu_check_dry_run_runs_every_part_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: the GPU script's every step, tiny, on the CPU."""
    env = {**os.environ, "PYTHON": sys.executable, "WORK_DIR": str(tmp_path / "gpu-check")}
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = result.stdout
    assert result.returncode == 0, out[-5000:] + result.stderr[-2000:]
    assert "== gpu_check: DRY RUN on the CPU" in out
    for part in (
        "inputs",
        "launch-single",
        "launch-ddp",
        "data-path-real",
        "data-path-tensors",
        "compile-on",
    ):
        assert f"\n== {part} ==\n" in out
    assert re.search(r"launch-single: [\d.]+ steps/s", out)
    assert re.search(r"launch-ddp: [\d.]+ steps/s", out)
    assert re.search(r"data-path-real: [\d,.]+ images/s", out)
    assert re.search(r"compile-on: [\d,.]+ images/s.* torch.compile on", out)
    for ratio in (
        "data path / in-memory tensors",
        "torch.compile on / off",
        "all-GPU DDP / single-GPU",
    ):
        assert re.search(rf"{re.escape(ratio)}[^:\n]*: [\d.]+\n", out), ratio
    assert out.rstrip().endswith("parts failed: 0")


def test_onnx_benchmark_times_both_runtimes_at_batch_1_and_32(work_dir, monkeypatch, capsys):
    out = _run("bench_onnx", work_dir, monkeypatch, capsys)
    assert "max |logit difference|" in out
    for batch in (1, 32):
        assert f"batch {batch} (" in out
    assert "summary: onnxruntime / PyTorch images/s: batch 1 " in out


def test_probe_benchmark_compares_probe_and_freeze_backbone(work_dir, monkeypatch, capsys):
    out = _run("bench_probe", work_dir, monkeypatch, capsys)
    for row in ("train.py --freeze", "koin probe (cold)", "koin probe (cached)"):
        assert row in out
    assert "probe / freeze wall =" in out and "validation top-1: probe - freeze" in out


def test_open_set_benchmark_calibrates_and_enrolls(work_dir, monkeypatch, capsys):
    out = _run("bench_open_set", work_dir, monkeypatch, capsys)
    assert "calibration: temperature" in out
    assert "enrolment from 5 photos" in out
    assert "trained people's drop" in out or "no one enrolled" in out
