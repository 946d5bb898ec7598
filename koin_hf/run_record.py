"""The run record: what a training run was, saved beside the model as `koin_training.json`.

Training writes it; the model card, `koin evaluate`'s report and `koin evaluate`'s default
dataset read it. One dataclass for all of them, so a field is named, typed and documented once.
The file is plain JSON with a `schema_version`; files written before the version existed (the
same fields, no version) read as version 1. Reading is forgiving about missing fields (a card can
be rendered for a hand-made folder) and strict about what cannot be trusted: unreadable JSON, a
non-object, or a schema newer than this koin-hf understands.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koin_hf.errors import KoinError

RUN_RECORD_FILE = "koin_training.json"
SCHEMA_VERSION = 1
SYNTHETIC_DATASET = "synthetic-koin (embedded)"


@dataclass
class LoraSettings:
    r: int
    alpha: int
    dropout: float
    target_modules: list[str]


@dataclass
class RunRecord:
    """One training run. Every field may be None in a record that did not come from train.py."""

    family: str | None = None  # registry family name
    base_model: str | None = None  # the starting checkpoint (a Hub id, a folder, or a family's)
    method: str | None = None  # "full", "lora" or "linear_probe"
    lora: LoraSettings | None = None  # with method "lora"
    zero_shot_head_init: bool = False
    shots_per_class: int | None = None  # None: every training image
    seed: int | None = None
    num_train_epochs: float | None = None
    global_steps: int | None = None
    learning_rate: float | None = None
    precision: str | None = None  # "fp32", "bf16" or "fp16"
    world_size: int | None = None  # processes that trained
    dataset: str | None = None  # the dataset as named, or SYNTHETIC_DATASET
    dataset_config: str | None = None
    eval_sets: list[str] = field(default_factory=list)
    train_images: int | None = None  # None for a streamed train split
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    best_checkpoint_metric: str | None = None
    train_seconds: float | None = None
    data_args: dict[str, Any] = field(default_factory=dict)  # train.py's DataArguments, as given
    koin_hf_version: str | None = None
    transformers_version: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def is_synthetic(self) -> bool:
        """Trained on generated faces, not photos of people."""
        return "synth" in str(self.dataset or "").lower()

    @property
    def dataset_name(self) -> str | None:
        """The `--dataset_name` the run was given (None: the embedded synthetic KoIn)."""
        return self.data_args.get("dataset_name") or None

    @property
    def synthetic_num_classes(self) -> int:
        return int(self.data_args.get("synthetic_num_classes") or 10)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / RUN_RECORD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "run record") -> RunRecord:
        version = values.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise KoinError(
                f"{where} has schema_version {version!r}; this koin-hf reads up to "
                f"{SCHEMA_VERSION}: upgrade koin-hf"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {key: value for key, value in values.items() if key in known}
        lora = kwargs.get("lora")
        if isinstance(lora, dict):
            kwargs["lora"] = LoraSettings(
                r=lora.get("r"),
                alpha=lora.get("alpha"),
                dropout=lora.get("dropout"),
                target_modules=list(lora.get("target_modules") or []),
            )
        elif lora is not None:
            kwargs["lora"] = None
        if not isinstance(kwargs.get("data_args", {}), dict):
            kwargs["data_args"] = {}
        if not isinstance(kwargs.get("eval_sets", []), list):
            kwargs["eval_sets"] = []
        kwargs["schema_version"] = version
        return cls(**kwargs)

    @classmethod
    def load(cls, model_dir: str | Path) -> RunRecord:
        """The record of a model folder; a KoinError when it is missing or unreadable."""
        path = Path(model_dir) / RUN_RECORD_FILE
        if not path.is_file():
            raise KoinError(f"{model_dir} has no {RUN_RECORD_FILE}: it was not trained by koin-hf")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KoinError(f"cannot read {path} ({err})") from None
        if not isinstance(values, dict):
            raise KoinError(f"{path} should hold a JSON object, not {type(values).__name__}")
        return cls.from_dict(values, where=str(path))

    @classmethod
    def load_if_present(cls, model_dir: str | Path) -> RunRecord | None:
        """The record, or None for a folder without one (a model not trained by koin-hf)."""
        if not (Path(model_dir) / RUN_RECORD_FILE).is_file():
            return None
        return cls.load(model_dir)
