"""Command-line arguments of `train.py`, as dataclasses for `HfArgumentParser`.

Flag names follow transformers' image-classification example (`dataset_name`,
`dataset_config_name`, `image_column_name`, `label_column_name`, `ignore_mismatched_sizes`,
every `TrainingArguments` flag) so users' habits carry over; KoIn adds few-shot and LoRA flags.
A YAML or JSON file may hold the same arguments; flags after it override it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import HubStrategy, IntervalStrategy, SaveStrategy

from koin_hf.errors import KoinError
from koin_hf.flags import unknown_arguments_message

DEFAULT_MODEL = "lite0"  # ImageNet EfficientNet-Lite0 shipped on PyPI: fine-tunes offline


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "a family name (clip, vit, convnext, resnet, densenet, efficientnet, bit, lite0), "
            "'<family>-tiny' for a tiny random model, a Hub id, or a local checkpoint folder"
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=True,
        metadata={
            "help": "replace a checkpoint's classification head that has another number of classes"
        },
    )
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (PEFT) plus the head"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    # A plain list (empty = the family's targets): HfArgumentParser cannot parse `list | None`.
    lora_target_modules: list[str] = field(
        default_factory=list,
        metadata={"help": "override the family's LoRA target module names", "nargs": "+"},
    )
    save_adapter: bool = field(
        default=False,
        metadata={"help": "also save the LoRA adapter alone under OUTPUT_DIR/adapter"},
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "train the classification head only (a linear probe)"}
    )
    zero_shot_head_init: bool = field(
        default=False,
        metadata={"help": "CLIP only: start the head from the class-name text embeddings"},
    )
    prompt_template: str = field(
        default="a photo of {name}.", metadata={"help": "prompt for --zero_shot_head_init"}
    )


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "prepared KoIn dataset: a folder from `koin prepare` or a Hub id; "
            "default: the embedded synthetic KoIn (generated once, cached)"
        },
    )
    dataset_config_name: str = field(default="normal", metadata={"help": "config to train on"})
    eval_config_names: list[str] = field(
        default_factory=lambda: ["normal", "hard", "group"],
        metadata={
            "help": "configs whose test split is scored (missing ones are skipped)",
            "nargs": "+",
        },
    )
    image_column_name: str = field(default="image", metadata={"help": "column holding the images"})
    label_column_name: str = field(default="label", metadata={"help": "ClassLabel column"})
    train_val_split: float = field(
        default=0.15,
        metadata={"help": "fraction of each training class held out to pick the best checkpoint"},
    )
    shots_per_class: int | None = field(
        default=None, metadata={"help": "few-shot: train on exactly N images per class"}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "debugging: score at most N images per eval set"}
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "read the train split as a stream (datasets too large for the disk); needs --max_steps"
        },
    )
    shuffle_buffer_size: int = field(
        default=2048, metadata={"help": "with --streaming: examples held in the shuffle buffer"}
    )
    synthetic_num_classes: int = field(
        default=10,
        metadata={"help": "identities in the embedded synthetic KoIn (no --dataset_name)"},
    )


@dataclass
class KoinTrainingArguments(TrainingArguments):
    """TrainingArguments with defaults that suit image classification on KoIn."""

    output_dir: str | None = field(default=None, metadata={"help": "default: outputs/koin-<model>"})
    num_train_epochs: float = field(default=3.0, metadata={"help": "training epochs"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "batch size per device"})
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "eval batch size per device"}
    )
    warmup_steps: float = field(default=0.1, metadata={"help": "warmup steps (int) or ratio (<1)"})
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "when to evaluate"}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "when to checkpoint"}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "keep the best epoch"})
    # The validation split, carved from train, picks the best checkpoint: never a test set.
    metric_for_best_model: str | None = field(
        default="validation_top1_accuracy",
        metadata={"help": "metric that picks the best checkpoint"},
    )
    # Trainer would drop the image column as "unused" (transformers #17894).
    remove_unused_columns: bool = field(default=False, metadata={"help": "keep the image column"})
    logging_steps: float = field(default=10, metadata={"help": "log every N steps"})
    hub_strategy: HubStrategy | str = field(
        default="end", metadata={"help": "push only the final merged model"}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "stop after N evaluations without validation improvement"}
    )
    # Validation picks the checkpoint, so only it is needed during training; scoring the test
    # sets at every epoch too multiplied evaluation time by 4 on the default run.
    eval_test_sets_each_epoch: bool = field(
        default=False,
        metadata={
            "help": "also score the test sets at every evaluation (per-epoch test curves); by "
            "default they are scored once, from the chosen checkpoint, at the end"
        },
    )

    def __post_init__(self) -> None:
        # On a machine without an accelerator, transformers only treats a torchrun/accelerate
        # multi-process launch as distributed when use_cpu is set; otherwise every process
        # trains alone on its full copy of the data. Default it, so `accelerate launch
        # --multi_gpu --num_processes 2 train.py` is a real gloo DDP run on CPUs too.
        if not self.use_cpu and not _has_accelerator():
            self.use_cpu = True
        super().__post_init__()


def _has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (xpu is not None and xpu.is_available())
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, KoinTrainingArguments)


def _file_to_argv(path: Path) -> list[str]:
    """Turn a YAML/JSON argument file into flags, so later command-line flags override it."""
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise KoinError(f"cannot read argument file {path}: {err}") from err
    if not isinstance(values, dict):
        raise KoinError(f"argument file {path} must hold a mapping of argument names to values")
    argv = []
    for key, value in values.items():
        if isinstance(value, list):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, bool):
            argv += [f"--{key}", "true" if value else "false"]
        elif value is not None:
            argv += [f"--{key}", str(value)]
    return argv


# Flags of transformers' example scripts that transformers 5 removed, and what to do instead.
REMOVED_FLAGS = {
    "--overwrite_output_dir": "removed in transformers 5: an existing --output_dir is written "
    "into; to continue a run, pass --resume_from_checkpoint last",
}


def parse_arguments(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, KoinTrainingArguments]:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Leading argument files are applied in order (e.g. a family preset, then a protocol preset);
    # flags after them override both.
    file_argv: list[str] = []
    while argv and argv[0].endswith((".yaml", ".yml", ".json")) and not argv[0].startswith("-"):
        file_argv += _file_to_argv(Path(argv.pop(0)))
    argv = file_argv + argv
    # No abbreviations: argparse would silently read --learning_rat as --learning_rate.
    parser = HfArgumentParser(ARGUMENT_CLASSES, allow_abbrev=False)
    model_args, data_args, training_args, unknown = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if unknown:
        raise KoinError(
            unknown_arguments_message(
                unknown,
                list(parser._option_string_actions),
                help_command="python train.py",
                removed=REMOVED_FLAGS,
                where="on the command line or in an argument file",
            )
        )
    return model_args, data_args, training_args
