"""train.py's output folder: claimed by one run, never mixed with a different run's files.

transformers 5 writes into any existing `output_dir`: a folder holding another model ended up
with two architectures' checkpoints and processors mixed, and two runs into one folder finished
with one run's weights under the other's run record. Before any data is read:

- the process that saves (the main one) claims the folder with a lock (`koin_hf.folder_lock`),
  held until the run ends: a second run into it is refused;
- resuming (`--resume_from_checkpoint last`, or a checkpoint inside the folder) takes the folder
  as it is;
- otherwise what the folder holds decides. Nothing: start. The finished run of the same
  arguments (its run record agrees): its files are replaced. With `--overwrite_output_dir`:
  the files koin-hf runs write are removed first, other files are kept. Anything else (a run
  record of another run, a model without a record, an unfinished run's checkpoints, files
  koin-hf does not write) is refused, naming what is there and the flags that decide.

In a multi-process run the main process decides and every process learns the verdict, so all
stop together instead of waiting for a main process that has left.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from koin_hf.errors import KoinError
from koin_hf.folder_lock import claim_folder
from koin_hf.models.registry import FAMILIES
from koin_hf.run_record import RUN_RECORD_FILE, RunRecord
from koin_hf.training.arguments import DataArguments, KoinTrainingArguments, ModelArguments
from koin_hf.training.checkpoints import (
    CHECKPOINT_NAME,
    CHECKPOINTS_FOLDER,
    checkpoints,
    is_checkpoint_of,
    resolve_resume_checkpoint,
)

logger = logging.getLogger(__name__)

OVERWRITE_FLAG = "--overwrite_output_dir"
# Every name a koin-hf run writes into its output folder (run.py, Trainer, push_to_hub's card).
KOIN_OUTPUT_FILES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "preprocessor_config.json",
        "training_args.bin",
        RUN_RECORD_FILE,
        "fewshot_ids.json",  # run.FEWSHOT_IDS_FILE
        "all_results.json",
        "train_results.json",
        "eval_results.json",
        "trainer_state.json",
        "README.md",
        "open_set.safetensors",  # koin calibrate / enroll: class prototypes
        "probe.json",  # koin probe: the C sweep
    }
)
# --save_adapter; Trainer's checkpoints (checkpoints.CHECKPOINTS_FOLDER); TensorBoard's logs
KOIN_OUTPUT_FOLDERS = frozenset({"adapter", CHECKPOINTS_FOLDER, "runs"})
WEIGHT_SHARD = re.compile(r"^model-\d+-of-\d+\.safetensors$")


@contextmanager
def claimed_output_dir(
    model_args: ModelArguments, data_args: DataArguments, training_args: KoinTrainingArguments
) -> Iterator[str | None]:
    """Hold `training_args.output_dir` for this run; yield the checkpoint to resume from (or None)."""
    output_dir = training_args.output_dir
    checkpoint = problem = None
    with ExitStack() as claim:
        try:
            if training_args.should_save:
                claim.enter_context(claim_folder(output_dir, what="a train.py run"))
            checkpoint = resolve_resume_checkpoint(training_args.resume_from_checkpoint, output_dir)
            if training_args.should_save:
                prepare_output_dir(
                    output_dir,
                    run_identity(model_args, data_args, training_args),
                    resume_checkpoint=checkpoint,
                    overwrite=training_args.overwrite_output_dir,
                )
        except (KoinError, OSError) as err:
            problem = str(err) if isinstance(err, KoinError) else f"{output_dir}: {err}"
        problem = _agreed_problem(problem, training_args)
        if problem:
            raise KoinError(problem)
        yield checkpoint


def _agreed_problem(problem: str | None, training_args: KoinTrainingArguments) -> str | None:
    """The first process's problem, known to every process of a distributed run."""
    if training_args.world_size <= 1:
        return problem
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return problem
    problems: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    return next((p for p in problems if p), None)


def is_koin_output(path: Path) -> bool:
    """Whether `path` (an entry of an output folder) is something a koin-hf run writes there."""
    if path.is_dir():
        return path.name in KOIN_OUTPUT_FOLDERS or bool(CHECKPOINT_NAME.match(path.name))
    return path.name in KOIN_OUTPUT_FILES or bool(WEIGHT_SHARD.match(path.name))


def prepare_output_dir(
    output_dir: str | Path,
    identity: dict[str, Any],
    *,
    resume_checkpoint: str | None = None,
    overwrite: bool = False,
) -> None:
    """Refuse, or clear for this run, what `output_dir` holds (see the module docstring)."""
    folder = Path(output_dir)
    entries = sorted(folder.iterdir()) if folder.is_dir() else []  # the lock sits beside it
    if not entries:
        return
    if resume_checkpoint is not None and is_checkpoint_of(resume_checkpoint, folder):
        return  # resuming this very run
    ours = [p for p in entries if is_koin_output(p)]
    others = [p for p in entries if not is_koin_output(p)]
    if overwrite:
        _remove(folder, ours)
        if others:
            logger.warning(
                "%s: kept %d entries koin-hf did not write: %s", folder, len(others), _names(others)
            )
        return
    if others:
        raise KoinError(
            f"{folder} holds files koin-hf runs do not write ({_names(others)}): choose another "
            f"--output_dir, or pass {OVERWRITE_FLAG} to write there anyway (koin-hf's own files "
            "are replaced, these are kept)"
        )
    try:
        record = RunRecord.load_if_present(folder)
    except KoinError as err:
        raise KoinError(f"{err}; pass {OVERWRITE_FLAG} to replace that run") from None
    if record is None:
        raise KoinError(_unrecorded_refusal(folder, ours))
    difference = identity_difference(record, identity)
    if difference:
        raise KoinError(
            f"{folder} holds another run ({difference}): choose another --output_dir, or pass "
            f"{OVERWRITE_FLAG} to replace it"
        )
    logger.info("%s holds a run with the same arguments: replacing it", folder)
    _remove(folder, ours)


def _unrecorded_refusal(folder: Path, ours: list[Path]) -> str:
    found = checkpoints(folder)
    if found:
        return (
            f"{folder} holds an unfinished run ({_names(found)}): continue it with "
            f"--resume_from_checkpoint last, start over with {OVERWRITE_FLAG}, or choose another "
            "--output_dir"
        )
    if (folder / "config.json").is_file():
        return (
            f"{folder} holds another model (config.json, and no {RUN_RECORD_FILE} of a koin-hf "
            f"run): choose another --output_dir, or pass {OVERWRITE_FLAG} to replace it"
        )
    return (
        f"{folder} holds an earlier run's files without its {RUN_RECORD_FILE} ({_names(ours)}): "
        f"choose another --output_dir, or pass {OVERWRITE_FLAG} to replace them"
    )


def run_identity(
    model_args: ModelArguments, data_args: DataArguments, training_args: KoinTrainingArguments
) -> dict[str, Any]:
    """What makes two runs the same run, from the arguments, comparable with a run record."""
    lora = (
        [model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout]
        if model_args.lora
        else None
    )
    return {
        "model": model_args.model_name_or_path,
        "method": model_args.method,
        "lora": lora,
        "zero_shot_head_init": model_args.zero_shot_head_init,
        "seed": training_args.seed,
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        # As the record stores them: through JSON (tuples become lists).
        "data_args": json.loads(json.dumps(dataclasses.asdict(data_args))),
    }


def identity_difference(record: RunRecord, identity: dict[str, Any]) -> str | None:
    """The first way the recorded run differs from `identity`, in words; None when the same."""
    model = identity["model"]
    family = FAMILIES.get(model)
    if record.base_model not in (model, family.default_checkpoint if family else model):
        return f"its model is {record.base_model!r}, this run's {model!r}"
    recorded_lora = (
        [record.lora.r, record.lora.alpha, record.lora.dropout] if record.lora is not None else None
    )
    recorded = {
        "method": record.method,
        "lora": recorded_lora,
        "zero_shot_head_init": record.zero_shot_head_init,
        "seed": record.seed,
        "learning_rate": record.learning_rate,
        "num_train_epochs": record.num_train_epochs,
    }
    for key, theirs in recorded.items():
        if theirs != identity[key]:
            return f"its {key} is {theirs!r}, this run's {identity[key]!r}"
    for key, ours in identity["data_args"].items():
        # A key the record lacks was added to train.py after that run: not a difference.
        if key in record.data_args and record.data_args[key] != ours:
            return f"its {key} is {record.data_args[key]!r}, this run's {ours!r}"
    return None


def _remove(folder: Path, entries: list[Path]) -> None:
    if not entries:
        return
    logger.info("%s: removing the earlier run's %s", folder, _names(entries))
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _names(paths: list[Path], shown: int = 5) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in paths]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
