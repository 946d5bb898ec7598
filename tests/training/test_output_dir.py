"""train.py's output folder: claimed by one run, refused when it holds a different run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from koin_hf.errors import KoinError
from koin_hf.folder_lock import claim_folder, lock_path
from koin_hf.run_record import RUN_RECORD_FILE, LoraSettings, RunRecord
from koin_hf.training import run
from koin_hf.training.arguments import parse_arguments
from koin_hf.training.output_dir import (
    KOIN_OUTPUT_FILES,
    claimed_output_dir,
    prepare_output_dir,
    run_identity,
)

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--model_name_or_path", "vit-tiny", "--learning_rate", "1e-3", "--seed", "3"]


def _args(out, *extra):
    return parse_arguments([*ARGS, "--output_dir", str(out), *extra])


def _identity(out, *extra):
    return run_identity(*_args(out, *extra))


def _finished_run(out, *extra) -> None:
    """What a finished run leaves: its record, weights, and two checkpoints."""
    model_args, data_args, training_args = _args(out, *extra)
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-4").mkdir()
    for name in ("config.json", "model.safetensors", "all_results.json"):
        (out / name).write_text("{}", encoding="utf-8")
    RunRecord(
        family="vit",
        base_model=model_args.model_name_or_path,
        method=model_args.method,
        lora=LoraSettings(r=model_args.lora_r, alpha=model_args.lora_alpha,
                          dropout=model_args.lora_dropout, target_modules=["query"])
        if model_args.lora else None,
        seed=training_args.seed,
        learning_rate=training_args.learning_rate,
        num_train_epochs=training_args.num_train_epochs,
        data_args=json.loads(json.dumps(vars(data_args))),
    ).save(out)  # fmt: skip


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_new_or_empty_folder_is_taken(tmp_path):
    prepare_output_dir(tmp_path / "missing", _identity(tmp_path))
    (tmp_path / "empty").mkdir()
    prepare_output_dir(tmp_path / "empty", _identity(tmp_path))


def test_the_same_runs_earlier_output_is_replaced(tmp_path):
    _finished_run(tmp_path)
    prepare_output_dir(tmp_path, _identity(tmp_path))
    assert _names(tmp_path) == []


@pytest.mark.parametrize(
    ("extra", "difference"),
    [
        (["--learning_rate", "5e-4"], "its learning_rate is 0.001, this run's 0.0005"),
        (["--model_name_or_path", "clip-tiny"], "its model is 'vit-tiny', this run's 'clip-tiny'"),
        (["--lora"], "its method is 'full', this run's 'lora'"),
        (["--seed", "4"], "its seed is 3, this run's 4"),
        (["--shots_per_class", "5"], "its shots_per_class is None, this run's 5"),
        (
            ["--dataset_config_name", "hard"],
            "its dataset_config_name is 'normal', this run's 'hard'",
        ),
    ],
)
def test_a_different_runs_record_is_refused_naming_the_difference(tmp_path, extra, difference):
    _finished_run(tmp_path)
    before = _names(tmp_path)
    with pytest.raises(KoinError) as error:
        prepare_output_dir(tmp_path, _identity(tmp_path, *extra))
    assert str(error.value) == (
        f"{tmp_path} holds another run ({difference}): choose another --output_dir, "
        "or pass --overwrite_output_dir to replace it"
    )
    assert _names(tmp_path) == before  # nothing touched


def test_another_model_unfinished_checkpoints_and_foreign_files_are_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "resnet"}', encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"x")
    with pytest.raises(KoinError, match=r"holds another model \(config.json, and no koin_training"):
        prepare_output_dir(model, _identity(model))
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(KoinError) as error:
        prepare_output_dir(unfinished, _identity(unfinished))
    assert (
        "holds an unfinished run (checkpoint-3/): continue it with --resume_from_checkpoint last"
        in str(error.value)
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work", encoding="utf-8")
    (home / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(KoinError, match=r"holds files koin-hf runs do not write \(thesis.tex\)"):
        prepare_output_dir(home, _identity(home))


def test_overwrite_removes_koin_files_and_keeps_the_others(tmp_path):
    _finished_run(tmp_path, "--learning_rate", "0.1")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    prepare_output_dir(tmp_path, _identity(tmp_path), overwrite=True)
    assert _names(tmp_path) == ["notes.txt"]


def test_every_file_a_run_writes_is_known_as_koin_output():
    assert run.FEWSHOT_IDS_FILE in KOIN_OUTPUT_FILES and RUN_RECORD_FILE in KOIN_OUTPUT_FILES
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "training_args.bin",
                 "all_results.json", "README.md"):  # fmt: skip
        assert name in KOIN_OUTPUT_FILES


def test_a_claimed_folder_refuses_a_second_run_and_resume_is_allowed(tmp_path):
    out = tmp_path / "out"
    second = pytest.raises(KoinError, match=r"is being written by a train.py run \(pid")
    with claim_folder(out, what="a train.py run"), second, claimed_output_dir(*_args(out)):
        pass
    checkpoint = out / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 3}', encoding="utf-8")
    save_file({"w": torch.zeros(4)}, checkpoint / "model.safetensors")
    with pytest.raises(KoinError, match="holds an unfinished run"), claimed_output_dir(*_args(out)):
        pass
    resume = _args(out, "--resume_from_checkpoint", "last")
    with claimed_output_dir(*resume) as resumed_from:
        assert resumed_from == str(checkpoint)
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_overwrite_output_dir_is_koin_hfs_own_flag_again(tmp_path):
    *_, training_args = _args(tmp_path, "--overwrite_output_dir")
    assert training_args.overwrite_output_dir is True


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="gloo CPU launch tested on Linux")
def test_every_process_of_a_distributed_run_stops_at_a_refusal(tmp_path):
    """The main process decides; the other learns it instead of waiting for it forever."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"), str(REPO / "train.py"),
        "--output_dir", str(out), "--model_name_or_path", "vit-tiny", "--max_steps", "1",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    refusal = f"train.py: error: {out} holds files koin-hf runs do not write (notes.txt)"
    assert (result.stdout + result.stderr).count(refusal) == 2  # both processes, same verdict
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
