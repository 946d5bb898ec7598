"""Smoke tests: every benchmark in benchmarks/ runs end to end at a tiny size (`--quick`).

They check that the scripts still work against the current library (real prepare, real
DataLoaders, real Trainer, real evaluate_model/pipeline, real train.py subprocesses), not the
timings: those are recorded in benchmarks/RESULTS.md from full-size runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

# Benchmarks in --quick mode: real subprocesses, tens of seconds.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the generated inputs, shared by the four benchmarks like a real cache."""
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
