"""Loading prepared KoIn datasets and their test sets, few-shot sampling, validation carving.

Everything here works on any dataset with an image column and a ClassLabel column, whether it
came from `koin prepare`, from the Hub, or from somewhere else entirely.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.dataset as pads
from datasets.packaged_modules.parquet.parquet import ParquetConfig
from datasets.utils.info_utils import is_small_dataset

from koin_hf.errors import KoinError

# --------------------------------------------------------------------------- loading


def load_prepared(
    name_or_path: str | os.PathLike,
    config_name: str,
    *,
    split: str | None = None,
    streaming: bool = False,
):
    """`load_dataset(name_or_path, config_name)` with one-sentence errors for the usual mistakes.

    Returns a DatasetDict (IterableDatasetDict when streaming), or one split when `split` is given.
    """
    name = str(name_or_path)
    try:
        return _load_reading_row_groups(name, config_name, split, streaming)
    except ValueError as err:
        message = str(err)
        if "not found" in message and "config" in message.lower():
            available = available_configs(name)
            raise KoinError(
                f"dataset {name} has no config {config_name!r}; available: {', '.join(available) or 'none'}"
            ) from err
        if split and ("split" in message.lower()):
            raise KoinError(
                f"config {config_name!r} of dataset {name} has no {split!r} split"
            ) from err
        raise
    except FileNotFoundError as err:
        raise KoinError(
            f"dataset {name} not found (not a local folder, and not on the Hub or offline)"
        ) from err


def _load_reading_row_groups(name: str, config_name: str, split: str | None, streaming: bool):
    """What `datasets.load_dataset` does, with parquet read a row group at a time.

    pyarrow pre-buffers a whole parquet file while datasets converts it to Arrow (see
    apache/arrow#39808): the first load of a prepared dataset held the file's size in heap
    (+250 MiB at 100k small images, bench_memory.py). Without pre-buffering it holds about a
    row group. The option is set on the builder's config after the cache folder is chosen, so
    the cache is the one a plain `load_dataset(name, config)` uses: it changes how the files are
    read, not what is built.
    """
    builder = datasets.load_dataset_builder(name, config_name)
    if isinstance(builder.config, ParquetConfig) and builder.config.fragment_scan_options is None:
        builder.config.fragment_scan_options = pads.ParquetFragmentScanOptions(pre_buffer=False)
    if streaming:
        return builder.as_streaming_dataset(split=split)
    builder.download_and_prepare()
    in_memory = is_small_dataset(builder.info.dataset_size)  # HF_DATASETS_IN_MEMORY_MAX_SIZE
    return builder.as_dataset(split=split, in_memory=in_memory)


def config_names(name_or_path: str | os.PathLike) -> list[str]:
    """The dataset's configs; a KoinError when the dataset cannot be read at all."""
    try:
        return list(datasets.get_dataset_config_names(str(name_or_path)))
    except Exception as err:  # whatever datasets raised, the user's problem is the same
        raise KoinError(f"cannot read the dataset {str(name_or_path)!r}: {err}") from err


def available_configs(name_or_path: str) -> list[str]:
    try:
        return config_names(name_or_path)
    except KoinError:  # the error we are explaining is the caller's; this is best effort
        return []


def load_test_sets(
    source: str | os.PathLike | Mapping[str, Any],
    configs: Sequence[str],
    *,
    split: str = "test",
    required: bool = False,
    image_column: str = "image",
    label_column: str = "label",
) -> tuple[dict[str, Any], dict[str, str]]:
    """{config: its `split`} for each config that has one, and {config: why not} for the others.

    `source` is a prepared folder or Hub id, or a mapping config -> Dataset. With `required`, a
    missing config or split is an error instead of a reason. Every set found has the columns a
    model needs (`check_columns`); whether its classes match a model is the caller's question.
    """
    if isinstance(source, Mapping):
        available, where = list(source), "the given datasets"

        def load(config: str):
            return source[config]
    else:
        available, where = config_names(source), str(source)

        def load(config: str):
            return load_prepared(source, config, split=split)

    found: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for config in configs:
        if config not in available:
            missing[config] = f"{where} has no {config!r} config (it has {', '.join(available)})"
        else:
            try:
                data = load(config)
            except KoinError as err:  # the config exists but has no such split
                missing[config] = str(err)
            else:
                # Wrong columns are a mistake to fix, never a set to skip quietly.
                check_columns(data.features, image_column, label_column, f"{where} ({config})")
                found[config] = data
                continue
        if required:
            raise KoinError(missing[config])
    return found, missing


def check_columns(
    features: datasets.Features, image_column: str, label_column: str, where: str
) -> None:
    """Fail before training when the columns are not what the model needs."""
    columns = ", ".join(features)
    if label_column not in features:
        raise KoinError(
            f"{where} has no label column {label_column!r} (columns: {columns}); set --label_column_name"
        )
    if not isinstance(features[label_column], datasets.ClassLabel):
        raise KoinError(
            f"{where}: column {label_column!r} is not a ClassLabel, so it has no class names"
        )
    if image_column not in features:
        raise KoinError(
            f"{where} has no image column {image_column!r} (columns: {columns}); set --image_column_name"
        )
    if not isinstance(features[image_column], datasets.Image):
        raise KoinError(
            f"{where}: column {image_column!r} is not an image column ({features[image_column]})"
        )


def label_names(
    dataset: datasets.Dataset | datasets.IterableDataset, label_column: str = "label"
) -> list[str]:
    return list(dataset.features[label_column].names)


# --------------------------------------------------------------------------- sampling


def _indices_by_class(labels: Sequence[int], num_classes: int) -> list[np.ndarray]:
    labels = np.asarray(labels)
    return [np.flatnonzero(labels == c) for c in range(num_classes)]


def stratified_split(
    dataset: datasets.Dataset, fraction: float, seed: int, label_column: str = "label"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split off `fraction` of each class (at least one image where a class has two or more)."""
    if not 0 < fraction < 1:
        raise KoinError(f"--train_val_split must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    names = dataset.features[label_column].names
    keep, held_out = [], []
    for indices in _indices_by_class(dataset[label_column], len(names)):
        indices = rng.permutation(indices)
        n_held = (
            min(len(indices) - 1, max(1, math.floor(len(indices) * fraction)))
            if len(indices) > 1
            else 0
        )
        held_out.extend(indices[:n_held].tolist())
        keep.extend(indices[n_held:].tolist())
    return dataset.select(sorted(keep)), dataset.select(sorted(held_out))


def sample_few_shot(
    dataset: datasets.Dataset, shots_per_class: int, seed: int, label_column: str = "label"
) -> datasets.Dataset:
    """Exactly `shots_per_class` images of every class, drawn with a seeded generator.

    Unlike `max_train_samples` in the transformers example (N images in total), this is the
    paper's protocol: N per class.
    """
    if shots_per_class < 1:
        raise KoinError(f"--shots_per_class must be at least 1, got {shots_per_class}")
    rng = np.random.default_rng(seed)
    names = dataset.features[label_column].names
    chosen = []
    for class_index, indices in enumerate(_indices_by_class(dataset[label_column], len(names))):
        if len(indices) < shots_per_class:
            raise KoinError(
                f"--shots_per_class {shots_per_class} is more than class {names[class_index]!r} has "
                f"({len(indices)} training images after the validation split)"
            )
        chosen.extend(rng.choice(indices, size=shots_per_class, replace=False).tolist())
    return dataset.select(sorted(chosen))


# --------------------------------------------------------------------------- embedded default


def default_cache_dir() -> Path:
    return Path(os.environ.get("KOIN_HF_CACHE", Path.home() / ".cache" / "koin_hf"))


def ensure_default_dataset(seed: int = 0, num_classes: int = 10) -> Path:
    """The embedded synthetic KoIn, generated and prepared once, then reused from the cache.

    A file lock makes concurrent callers (several accelerate processes) wait for the first.
    """
    from filelock import FileLock

    from koin_hf.prepare import prepare_koin
    from koin_hf.synthetic import generate_synthetic_koin

    base = default_cache_dir() / f"synthetic-koin-c{num_classes}-s{seed}"
    prepared = base / "prepared"
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / ".lock")):
        if not (prepared / "README.md").is_file():
            raw = base / "raw"
            if not (raw / "classes.csv").is_file():
                import shutil

                shutil.rmtree(raw, ignore_errors=True)
                generate_synthetic_koin(raw, num_classes=num_classes, seed=seed)
            prepare_koin(raw, prepared)
    return prepared
