"""Command-line arguments of `train.py`, as dataclasses for `HfArgumentParser`.

Flag names follow transformers' image-classification example (`dataset_name`,
`dataset_config_name`, `image_column_name`, `label_column_name`, `ignore_mismatched_sizes`,
every `TrainingArguments` flag) so users' habits carry over; KoIn adds few-shot and LoRA flags.
A YAML or JSON file may hold the same arguments; flags after it override it. The presets that
ship in the wheel (`configs/paper/*.yaml`, the package `koin_hf.configs`) are also addressable by
name: `paper/vit paper/50shot`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import HubStrategy, IntervalStrategy, SaveStrategy

from koin_hf.errors import KoinError
from koin_hf.flags import unknown_arguments_message

logger = logging.getLogger(__name__)

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

    @property
    def method(self) -> str:
        """How the model is trained, as the run record names it."""
        return "lora" if self.lora else "linear_probe" if self.freeze_backbone else "full"


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
    # None ("auto"): on whenever there are evaluations to pick from, off with --eval_strategy no.
    load_best_model_at_end: bool | None = field(
        default=None,
        metadata={
            "help": "end with the checkpoint that scored best on validation "
            "(default: on, off with --eval_strategy no)"
        },
    )
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
    verbose: bool = field(
        default=False,
        metadata={
            "help": "show every log line, progress bar and metric dict of the libraries (by "
            "default a run prints one line per stage, one training bar and the results table)"
        },
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "keep OUTPUT_DIR/checkpoints/ after a successful run (by default it is "
            "removed: the top of the folder holds the final model)"
        },
    )
    # koin-hf's own flag (transformers 5 removed its namesake): see training/output_dir.py.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "replace what --output_dir holds (another run's files are removed first); "
            "without it, a folder holding another run or files koin-hf did not write is refused"
        },
    )

    def __post_init__(self) -> None:
        # One flag value names several trackers: `--report_to tensorboard,trackio`.
        if isinstance(self.report_to, str) and "," in self.report_to:
            self.report_to = [name.strip() for name in self.report_to.split(",") if name.strip()]
        # On a machine without an accelerator, transformers only treats a torchrun/accelerate
        # multi-process launch as distributed when use_cpu is set; otherwise every process
        # trains alone on its full copy of the data. Default it, so `accelerate launch
        # --multi_gpu --num_processes 2 train.py` is a real gloo DDP run on CPUs too.
        if not self.use_cpu and not _has_accelerator():
            self.use_cpu = True
        load_best_by_default = self.load_best_model_at_end is None
        evaluates = str(getattr(self.eval_strategy, "value", self.eval_strategy)) != "no"
        if load_best_by_default:
            self.load_best_model_at_end = evaluates
            if not evaluates:
                logger.info(
                    "--eval_strategy no: no evaluations to pick the best checkpoint from, so the "
                    "saved model is the last step's (--load_best_model_at_end is off)"
                )
                if str(getattr(self.save_strategy, "value", self.save_strategy)) != "best":
                    self.metric_for_best_model = None
        elif self.load_best_model_at_end and not evaluates:
            raise KoinError(
                "--load_best_model_at_end needs evaluations to pick from: drop it, or set "
                "--eval_strategy to epoch or steps"
            )
        try:
            super().__post_init__()
        except ValueError as err:
            if load_best_by_default and "load_best_model_at_end" in str(err):
                raise ValueError(
                    f"{err} (koin-hf turns --load_best_model_at_end on by default; pass "
                    "--load_best_model_at_end false to save the last step's model instead)"
                ) from err
            raise


def _has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (xpu is not None and xpu.is_available())
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, KoinTrainingArguments)


ARGUMENT_FILE_SUFFIXES = (".yaml", ".yml", ".json")
PRESET_PACKAGE = "koin_hf.configs"


def _preset_root():
    from importlib import resources

    return resources.files(PRESET_PACKAGE)


def shipped_presets() -> list[str]:
    """The preset names that ship with koin-hf (`paper/vit`, `paper/50shot`, ...), sorted."""
    root = _preset_root()
    names = []
    for folder in root.iterdir():
        if folder.is_dir() and folder.name != "accelerate" and not folder.name.startswith("_"):
            names += [
                f"{folder.name}/{entry.name.rsplit('.', 1)[0]}"
                for entry in folder.iterdir()
                if entry.name.endswith(ARGUMENT_FILE_SUFFIXES)
            ]
    return sorted(names)


def resolve_argument_file(value: str) -> Path:
    """The file a leading positional argument names: a path, else a shipped preset.

    `configs/paper/vit.yaml` is a path in a checkout; from any other folder (a wheel install) the
    same spelling, `paper/vit.yaml` or plain `paper/vit` reaches the preset that ships in the
    package. A name that is neither is a KoinError listing the presets.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    name = value.removeprefix("configs/")
    if not name.endswith(ARGUMENT_FILE_SUFFIXES):
        name += ".yaml"
    shipped = _preset_root().joinpath(*name.split("/"))
    if shipped.is_file():
        return Path(str(shipped))
    raise KoinError(
        f"{value!r} is neither an argument file nor a shipped preset; the presets are "
        f"{', '.join(shipped_presets())} (or pass a path to your own .yaml/.json)"
    )


def _is_argument_file(value: str) -> bool:
    """A leading positional argument: a .yaml/.json file or a preset name (`paper/vit`)."""
    return not value.startswith("-") and (value.endswith(ARGUMENT_FILE_SUFFIXES) or "/" in value)


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
# (--overwrite_output_dir, also removed there, is koin-hf's own flag again.)
REMOVED_FLAGS = {
    "--evaluation_strategy": "renamed --eval_strategy, and removed under the old name in "
    "transformers 5",
}


class _TrainArgumentParser(HfArgumentParser):
    """HfArgumentParser whose mistakes (a bad value, a bad choice) are a KoinError, not usage text."""

    def error(self, message: str):
        raise KoinError(message)


def parse_arguments(
    argv: list[str] | None = None, prog: str | None = None
) -> tuple[ModelArguments, DataArguments, KoinTrainingArguments]:
    """train.py's arguments, validated (`validate_arguments`); a KoinError for any mistake."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Leading argument files are applied in order (e.g. a family preset, then a protocol preset);
    # flags after them override both.
    file_argv: list[str] = []
    while argv and _is_argument_file(argv[0]):
        file_argv += _file_to_argv(resolve_argument_file(argv.pop(0)))
    argv = file_argv + argv
    # No abbreviations: argparse would silently read --learning_rat as --learning_rate.
    parser = _TrainArgumentParser(
        ARGUMENT_CLASSES,
        prog=prog,
        allow_abbrev=False,
        usage=f"{prog or 'train.py'} [PRESET_OR_FILE ...] [--flag value ...]",
        description="Fine-tune an image classifier on KoIn. Leading PRESET_OR_FILE arguments are "
        "YAML/JSON files of these flags or shipped presets by name, applied in order; flags "
        "after them override them.",
        epilog=f"Shipped presets: {', '.join(shipped_presets())}.",
    )
    try:
        model_args, data_args, training_args, unknown = parser.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True
        )
    except KoinError:
        raise
    except ValueError as err:  # TrainingArguments.__post_init__'s own checks, several lines
        raise KoinError(f"invalid training arguments: {_one_line(str(err))}") from None
    if unknown:
        raise KoinError(
            unknown_arguments_message(
                unknown,
                list(parser._option_string_actions),
                help_command="python train.py" if prog in (None, "train.py") else prog,
                removed=REMOVED_FLAGS,
                where="on the command line or in an argument file",
            )
        )
    validate_arguments(model_args, data_args, training_args)
    return model_args, data_args, training_args


def _one_line(message: str) -> str:
    """transformers' multi-line messages ("... but found\n- Evaluation strategy: ...") as one."""
    lines = (line.strip() for line in message.splitlines())
    return " ".join(line.removeprefix("- ") for line in lines if line)


def validate_arguments(
    model_args: ModelArguments, data_args: DataArguments, training_args: KoinTrainingArguments
) -> None:
    """Refuse, before any work, values that would crash later or train silently wrong.

    transformers checks its own combinations in `TrainingArguments.__post_init__`; these are the
    ones it leaves to a traceback deep inside torch or peft, or lets run (zero epochs, a zero
    learning rate, zero shots meaning "all of them").
    """
    for problem in _argument_problems(model_args, data_args, training_args):
        raise KoinError(problem)


def _argument_problems(model_args, data_args, training_args):
    args = training_args
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        if getattr(args, name) < 1:
            yield f"--{name} must be at least 1, got {getattr(args, name)}"
    if args.gradient_accumulation_steps < 1:
        yield f"--gradient_accumulation_steps must be at least 1, got {args.gradient_accumulation_steps}"
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        yield f"--learning_rate must be a finite number above 0, got {args.learning_rate}"
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        yield f"--weight_decay must be a finite number of at least 0, got {args.weight_decay}"
    if not math.isfinite(args.warmup_steps):
        yield f"--warmup_steps must be a finite number, got {args.warmup_steps}"
    if args.max_steps == 0 or args.max_steps < -1:
        yield (
            f"--max_steps must be a positive number of steps (or -1, the default, to train for "
            f"--num_train_epochs), got {args.max_steps}"
        )
    elif args.max_steps == -1 and not (
        math.isfinite(args.num_train_epochs) and args.num_train_epochs > 0
    ):
        yield (
            f"--num_train_epochs must be above 0 (or set --max_steps), got {args.num_train_epochs}"
        )
    if args.dataloader_num_workers < 0:
        yield f"--dataloader_num_workers must be at least 0, got {args.dataloader_num_workers}"
    evaluates = args.eval_strategy.value != "no"
    if args.early_stopping_patience is not None:
        if args.early_stopping_patience < 1:
            yield f"--early_stopping_patience must be at least 1, got {args.early_stopping_patience}"
        elif not evaluates or not args.metric_for_best_model:
            yield (
                "--early_stopping_patience needs evaluations to compare: set --eval_strategy to "
                "epoch or steps (and keep --metric_for_best_model)"
            )
    if args.save_strategy.value == "best" and not evaluates:
        yield "--save_strategy best needs evaluations: set --eval_strategy to epoch or steps"

    if model_args.lora and model_args.freeze_backbone:
        yield "choose one of --lora and --freeze_backbone"
    if model_args.lora_r < 1:
        yield f"--lora_r must be at least 1, got {model_args.lora_r}"
    if not (math.isfinite(model_args.lora_alpha) and model_args.lora_alpha > 0):
        yield f"--lora_alpha must be above 0, got {model_args.lora_alpha}"
    if not 0 <= model_args.lora_dropout < 1:
        yield f"--lora_dropout must be at least 0 and below 1, got {model_args.lora_dropout}"

    data = data_args
    if not 0 < data.train_val_split < 1:
        yield f"--train_val_split must be between 0 and 1 (exclusive), got {data.train_val_split}"
    if data.shots_per_class is not None and data.shots_per_class < 1:
        yield (
            f"--shots_per_class must be at least 1, got {data.shots_per_class} "
            "(leave it out to train on every image)"
        )
    if data.max_eval_samples is not None and data.max_eval_samples < 1:
        yield f"--max_eval_samples must be at least 1, got {data.max_eval_samples}"
    if data.synthetic_num_classes < 2:
        yield f"--synthetic_num_classes must be at least 2, got {data.synthetic_num_classes}"
    if data.shuffle_buffer_size < 1:
        yield f"--shuffle_buffer_size must be at least 1, got {data.shuffle_buffer_size}"
    if data.dataset_name is not None and not data.dataset_name.strip():
        yield "--dataset_name is empty"
    if data.streaming and data.shots_per_class:
        yield "--shots_per_class needs the whole train split: drop --streaming"
    if data.streaming and args.max_steps <= 0:
        yield "--streaming needs --max_steps: a stream has no length to count epochs by"
    yield from _tracking_problems(args.report_to)


# --report_to integrations koin-hf documents, and the module each needs (the [tracking] extra).
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",)}


def _tracking_problems(report_to) -> list[str]:
    """A documented tracker that is not installed: one line naming the extra, not a traceback."""
    import importlib.util

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    problems = []
    for name in names:
        modules = TRACKERS.get(name)
        if modules and not any(importlib.util.find_spec(module) for module in modules):
            problems.append(
                f"--report_to {name} needs {modules[0]}: pip install 'koin-hf[tracking]'"
            )
    return problems
