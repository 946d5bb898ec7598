"""Resuming takes a complete checkpoint: a half-written newest one is skipped, never loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from rawkoin import make_raw_koin
from safetensors.torch import save_file

from koin_hf.data.prepare import prepare_koin
from koin_hf.errors import KoinError
from koin_hf.training.arguments import parse_arguments
from koin_hf.training.checkpoints import (
    checkpoint_problem,
    last_complete_checkpoint,
    resolve_resume_checkpoint,
)
from koin_hf.training.run import run_training

STEPS = ["--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps",
         "--save_steps", "1", "--save_total_limit", "5"]  # fmt: skip


def _fake_checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.zeros(8)}, path / "model.safetensors")
    torch.save({"state": {}}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    return path


def test_the_newest_complete_checkpoint_is_last(tmp_path, caplog):
    _fake_checkpoint(tmp_path, 2)
    newest = _fake_checkpoint(tmp_path, 10)  # 10 > 2 by step, not by name
    assert last_complete_checkpoint(tmp_path) == newest
    (newest / "trainer_state.json").unlink()
    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert (
        f"skipping the incomplete checkpoint {newest}: it has no trainer_state.json" in caplog.text
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("last", "--resume_from_checkpoint last: no complete checkpoint in {out} (1 incomplete: checkpoint-4)"),
        ("{out}/checkpoint-4", "--resume_from_checkpoint {out}/checkpoint-4 is not a complete checkpoint: it has no trainer_state.json"),
        ("{out}/nowhere", "--resume_from_checkpoint {out}/nowhere: no such folder"),
        ("{out}/notes.txt", "--resume_from_checkpoint {out}/notes.txt is a file: pass a checkpoint folder"),
    ],
)  # fmt: skip
def test_nothing_to_resume_is_one_line(tmp_path, value, expected):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(KoinError) as error:
        resolve_resume_checkpoint(value.format(out=tmp_path), tmp_path)
    assert str(error.value).startswith(expected.format(out=tmp_path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared dataset, output of a 2-step tiny run with checkpoints/checkpoint-{1,2})."""
    root = tmp_path_factory.mktemp("resume")
    raw = make_raw_koin(root / "raw")
    prepare_koin(raw, root / "prepared", verbose=False)
    run_training(*parse_arguments(_argv(root / "prepared", root / "run", "--max_steps", "2")))
    return root / "prepared", root / "run"


def _argv(prepared: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset_name", str(prepared), "--output_dir", str(out), "--model_name_or_path",
            "vit-tiny", "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0",
            "--learning_rate", "1e-3", "--keep_checkpoints", *STEPS, *extra]  # fmt: skip


def _truncate(path: Path) -> None:
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)


DAMAGE = {
    "weights truncated": lambda ckpt: _truncate(ckpt / "model.safetensors"),
    "weights missing": lambda ckpt: (ckpt / "model.safetensors").unlink(),
    "optimizer truncated": lambda ckpt: _truncate(ckpt / "optimizer.pt"),
    "trainer state missing": lambda ckpt: (ckpt / "trainer_state.json").unlink(),
    "trainer state truncated": lambda ckpt: _truncate(ckpt / "trainer_state.json"),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_half_written_real_checkpoint_is_skipped(trained, tmp_path, damage):
    _, run = trained
    out = shutil.copytree(run, tmp_path / "run")
    assert checkpoint_problem(out / "checkpoints" / "checkpoint-2") is None
    DAMAGE[damage](out / "checkpoints" / "checkpoint-2")
    assert checkpoint_problem(out / "checkpoints" / "checkpoint-2") is not None
    assert resolve_resume_checkpoint("last", out) == str(out / "checkpoints" / "checkpoint-1")


@pytest.mark.slow
def test_resume_last_after_a_kill_mid_save_continues_from_the_complete_one(trained, tmp_path):
    prepared, run = trained
    out = shutil.copytree(run, tmp_path / "run")
    _truncate(
        out / "checkpoints" / "checkpoint-2" / "model.safetensors"
    )  # killed while writing step 2
    run_training(*parse_arguments(_argv(prepared, out, "--max_steps", "3",
                                        "--resume_from_checkpoint", "last")))  # fmt: skip
    state = json.loads(
        (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text(encoding="utf-8")
    )
    assert state["global_step"] == 3
    assert [entry["step"] for entry in state["log_history"] if "eval_validation_loss" in entry] == [
        1,
        2,
        3,
    ]
    assert (
        checkpoint_problem(out / "checkpoints" / "checkpoint-2") is None
    )  # written again, whole this time
