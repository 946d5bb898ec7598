"""What a user meets first: `koin train` and `python -m` entry points, presets by name, the quiet
log, the output folder (model, card, record, results; no checkpoints), and tracking."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rawkoin import CLASS_NAMES, make_raw_koin

import koin_hf
from koin_hf.cli import main as koin_main
from koin_hf.errors import KoinError
from koin_hf.training.arguments import parse_arguments, shipped_presets

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


# ----------------------------------------------------------------------------- entry points


@pytest.mark.parametrize("argv", [["train", "--help"], ["train", "--", "--help"]])
def test_koin_train_help_lists_every_train_py_flag_and_the_presets(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        koin_main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: koin train [PRESET_OR_FILE ...]")
    for flag in ("--learning_rate", "--lora_r", "--shots_per_class", "--keep_checkpoints",
                 "--verbose", "--report_to", "paper/50shot", "paper/vit"):  # fmt: skip
        assert flag in out, flag


def test_presets_are_addressable_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the presets come from the package
    assert {"paper/vit", "paper/50shot", "paper/5shot", "paper/full"} <= set(shipped_presets())
    for spelling in (
        ["paper/vit", "paper/50shot"],
        ["configs/paper/vit.yaml", "paper/50shot.yaml"],
    ):
        model_args, data_args, training_args = parse_arguments([*spelling, "--bf16", "false"])
        assert model_args.model_name_or_path == "vit"
        assert data_args.shots_per_class == 50 and training_args.num_train_epochs == 10
        assert training_args.bf16 is False  # flags after the presets override them
    with pytest.raises(KoinError, match=r"'paper/vitt' is neither an argument file nor a shipped preset; the presets are .*paper/vit"):  # fmt: skip
        parse_arguments(["paper/vitt"])
    with pytest.raises(KoinError, match=r"'stray' \(a value without a flag\)"):
        parse_arguments(["stray"])


def test_the_train_submodule_leaves_the_api_function_in_place():
    function = koin_hf.train
    assert importlib.import_module("koin_hf.train") is function
    exec("import koin_hf.train", {})  # the statement a user may write
    assert koin_hf.train is function and callable(koin_hf.train) and function.__doc__


@pytest.mark.slow
def test_accelerate_launch_reaches_train_py_through_the_module(tmp_path):
    """`accelerate launch -m koin_hf.train` (the runs below go through `python -m koin_hf.training`)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    result = subprocess.run(
        [*launch, "-m", "koin_hf.train", "--help"],
        cwd=tmp_path,  # outside the checkout: nothing from configs/ or train.py
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: python -m koin_hf.train [PRESET_OR_FILE ...]")
    assert "--learning_rate" in result.stdout and "paper/vit" in result.stdout
    assert "were not passed" not in result.stderr  # accelerate's note, when values are passed


# ------------------------------------------------------------------ a whole run, as users see it


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared tiny KoIn with 3 classes, a timm checkpoint folder with a 5-class head).

    Starting from a checkpoint whose head has another size makes transformers report the
    replaced head, and a timm processor is the one whose save_pretrained only warns: both are
    noise koin-hf used to cause.
    """
    from koin_hf.data.prepare import prepare_koin
    from koin_hf.models.loading import load_model_and_processor

    root = tmp_path_factory.mktemp("surface")
    raw = make_raw_koin(
        root / "raw",
        per_split={"normal_cases/train": 8, "normal_cases/test": 3, "hard_cases/test": 3,
                   "Group_cases/test": 2},
    )  # fmt: skip
    prepare_koin(raw, root / "prepared", verbose=False)
    model, _, _ = load_model_and_processor("lite0-tiny", [f"c{i}" for i in range(5)], seed=0)
    model.save_pretrained(root / "five-class-lite0")
    return root / "prepared", root / "five-class-lite0"


def _train(start, out: Path, *extra: str) -> subprocess.CompletedProcess:
    prepared, checkpoint = start
    command = [
        sys.executable, "-m", "koin_hf.training", "--dataset_name", str(prepared),
        "--model_name_or_path", str(checkpoint), "--output_dir", str(out),
        "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
        "--dataloader_num_workers", "0", *extra,
    ]  # fmt: skip
    env = {**ENV, "TRACKIO_DIR": str(out.parent / "trackio"), "COLUMNS": "100"}
    # Bytes, decoded as they are: text mode would turn each bar redraw's \r into a new line.
    result = subprocess.run(command, env=env, capture_output=True, timeout=600)
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, result.stderr[-3000:]
    return result


NOISE = ("LOAD REPORT", "MISMATCH", "Writing model shards", "Generating", "save_pretrained",
         "{'eval_", "'train_runtime'", "Loading weights")  # fmt: skip


@pytest.mark.slow
def test_default_run_is_quiet_and_leaves_a_clean_model_folder(start, tmp_path):
    out = tmp_path / "run"
    trackers = ["tensorboard"] + (["trackio"] if importlib.util.find_spec("trackio") else [])
    result = _train(start, out, "--report_to", ",".join(trackers))
    log = result.stdout + result.stderr
    lines = log.split("\n")  # a progress bar redraws with \r, within its line
    # trackio prints where its database is and how to open the dashboard: its own notes.
    ours = [line for line in lines if not (line.startswith("* ") or "trackio" in line)]
    # 15 on the default run; older dependencies add a deprecation warning or two (149 before).
    assert len(ours) <= 20, log
    for noise in NOISE:
        assert noise not in log, noise
    for stage in ("data: ", "model: ", "train: ", "score: "):
        assert any(line.startswith(stage) for line in lines), stage
    assert "set          images   top-1   top-3" in result.stdout
    assert f"Every metric: {out / 'all_results.json'}" in result.stdout
    assert (
        sum(line.startswith(("validation ", "normal ", "hard ", "group ")) for line in lines) == 4
    )

    # The folder: the final model, processor settings, card, record and results at the top;
    # the checkpoints were removed once the run succeeded.
    top = {path.name for path in out.iterdir()}
    assert top == {"config.json", "model.safetensors", "training_args.bin", "README.md",
                   "koin_training.json", "all_results.json", "runs"}, top  # fmt: skip
    from huggingface_hub import ModelCard
    from transformers import pipeline

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "koin-hf" in card.data.tags
    assert "eval_normal_top1_accuracy" not in card.text and "normal" in card.text
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    assert set(classifier.model.config.id2label.values()) == set(CLASS_NAMES)

    # Tracking: TensorBoard event files under runs/ (and trackio's database when installed).
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events and all(path.stat().st_size > 0 for path in events)
    if "trackio" in trackers:
        assert list((tmp_path / "trackio").rglob("*.db")), list((tmp_path / "trackio").rglob("*"))


@pytest.mark.slow
def test_verbose_restores_the_libraries_output_and_keep_checkpoints_keeps_them(start, tmp_path):
    out = tmp_path / "verbose"
    result = _train(start, out, "--verbose", "--keep_checkpoints")
    log = result.stdout + result.stderr
    assert "LOAD REPORT" in log and "MISMATCH" in log  # transformers' own report, untouched
    assert "{'eval_validation_loss'" in log  # Trainer's metric dicts
    assert len(log.split("\n")) > 16
    kept = sorted(path.name for path in (out / "checkpoints").iterdir())
    assert kept == ["checkpoint-3", "checkpoint-6"], kept
    assert not any(path.name.startswith("checkpoint-") for path in out.iterdir())


def test_report_to_a_missing_tracker_names_the_extra(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tensorboard") else real_find_spec(name, *a),
    )
    with pytest.raises(KoinError, match=r"--report_to tensorboard needs tensorboard: pip install 'koin-hf\[tracking\]'"):  # fmt: skip
        parse_arguments(["--report_to", "tensorboard", "--output_dir", "x"])
