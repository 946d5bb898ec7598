"""Which checkpoint a run resumes from: a complete one, or a one-line error before any work.

`Trainer._save_checkpoint` (transformers 5) writes `checkpoint-N/` in place, in this order: the
model (config.json, model.safetensors), optimizer.pt, scheduler.pt, rng_state.pth, and
trainer_state.json last. A run killed in between leaves a checkpoint-N folder that transformers'
`get_last_checkpoint` still picks, since it looks at folder names only, and resuming then crashes.
Here a checkpoint is complete when its trainer_state.json reads and every weights or state file
in it is whole (see `koin_hf.models.model_folder.file_problem`); `last` is the newest complete
one, and a newer half-written one is skipped with a warning (the run writes it again when it
gets there).

Checkpoints live in `OUTPUT_DIR/checkpoints/` (`KoinTrainer._get_output_dir`), so the top of the
output folder is the finished model alone; a run removes them when it succeeds, unless
`--keep_checkpoints`. Folders written before that layout (`OUTPUT_DIR/checkpoint-N`) are still
found and resumed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from koin_hf.errors import KoinError
from koin_hf.models.model_folder import (
    WEIGHT_FILES,
    WEIGHT_INDEXES,
    file_problem,
    weights_problem,
)

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
CHECKPOINTS_FOLDER = "checkpoints"  # OUTPUT_DIR/checkpoints/checkpoint-N
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR-<step>
# What Trainer writes beside the weights; checked for truncation when present.
STATE_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".json", ".safetensors")
# The weights a checkpoint holds: a whole model's (sharded or not) or a PEFT adapter's.
CHECKPOINT_WEIGHTS = (
    *WEIGHT_FILES,
    *WEIGHT_INDEXES,
    "adapter_model.safetensors",
    "adapter_model.bin",
)
# The spellings of "the newest checkpoint in --output_dir" (transformers' own examples use True).
LAST = ("last", "latest", "true", "True")


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` is not a complete Trainer checkpoint, or None."""
    if not (folder / TRAINER_STATE).is_file():
        return (
            f"it has no {TRAINER_STATE} (not a checkpoint, or one whose save did not finish: "
            "Trainer writes that file last)"
        )
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in STATE_FILE_SUFFIXES:
            problem = file_problem(path)
            if problem:
                return problem
    # Whole weights were checked above; here they must also be there at all. A full model
    # saves model.safetensors, a PEFT model adapter_model.safetensors; FSDP and DeepSpeed keep
    # theirs in sub-folders, left to their own loaders.
    has_weights = any((folder / name).exists() for name in CHECKPOINT_WEIGHTS)
    if not has_weights and not any(path.is_dir() for path in folder.iterdir()):
        return weights_problem(folder)
    return None


def checkpoints_dir(output_dir: str | Path) -> Path:
    """Where Trainer writes a run's checkpoint-N folders: OUTPUT_DIR/checkpoints."""
    return Path(output_dir) / CHECKPOINTS_FOLDER


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The checkpoint-N folders of a run's `output_dir`, oldest step first.

    They are under `checkpoints/`; a folder written by an older koin-hf holds them at the top.
    """
    found = []
    for folder in (checkpoints_dir(output_dir), Path(output_dir)):
        if folder.is_dir():
            found += [
                (int(match.group(1)), path)
                for path in folder.iterdir()
                if (match := CHECKPOINT_NAME.match(path.name)) and path.is_dir()
            ]
    return [path for _step, path in sorted(found)]


def is_checkpoint_of(checkpoint: str | Path, output_dir: str | Path) -> bool:
    """Whether `checkpoint` is one of `output_dir`'s own checkpoints (resuming that very run)."""
    parent = Path(checkpoint).resolve().parent
    folder = Path(output_dir).resolve()
    return parent in (folder, checkpoints_dir(folder))


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `output_dir`, warning about newer incomplete ones."""
    for path in reversed(checkpoints(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("skipping the incomplete checkpoint %s: %s", path, problem)
    return None


def resolve_resume_checkpoint(value: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint `--resume_from_checkpoint VALUE` names, checked complete; None: start afresh."""
    if value in (None, "", "false", "False"):
        return None
    if value in LAST:
        if not Path(output_dir).is_dir():
            raise KoinError(
                f"--resume_from_checkpoint {value}: {output_dir} does not exist, so there is "
                "nothing to resume; drop the flag to start a new run"
            )
        found = last_complete_checkpoint(output_dir)
        if found is None:
            incomplete = checkpoints(output_dir)
            detail = (
                f" ({len(incomplete)} incomplete: {', '.join(p.name for p in incomplete)})"
                if incomplete
                else ""
            )
            raise KoinError(
                f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir}{detail}"
            )
        logger.info("resuming from %s", found)
        return str(found)
    path = Path(value).expanduser()
    if path.is_file():
        raise KoinError(
            f"--resume_from_checkpoint {value} is a file: pass a checkpoint folder "
            "(OUTPUT_DIR/checkpoints/checkpoint-N) or 'last'"
        )
    if not path.is_dir():
        raise KoinError(
            f"--resume_from_checkpoint {value}: no such folder; pass a checkpoint folder "
            "(OUTPUT_DIR/checkpoints/checkpoint-N) or 'last'"
        )
    problem = checkpoint_problem(path)
    if problem:
        raise KoinError(f"--resume_from_checkpoint {value} is not a complete checkpoint: {problem}")
    return str(path)
