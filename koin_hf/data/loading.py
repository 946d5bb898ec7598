"""Loading prepared KoIn datasets and their test sets, with one-sentence errors.

Everything here works on any dataset with an image column and a ClassLabel column, whether it
came from `koin prepare`, from the Hub, or from somewhere else entirely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import pyarrow.dataset as pads
from datasets.packaged_modules.parquet.parquet import ParquetConfig
from datasets.utils.info_utils import is_small_dataset

from koin_hf.errors import KoinError


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
    _refuse_offline_bare_name(name)
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
    except ConnectionError as err:  # offline (HF_HUB_OFFLINE) and not in the cache, or no network
        raise KoinError(_unreachable(name, err)) from err


def _refuse_offline_bare_name(name: str) -> None:
    """Offline, datasets answers a bare name that is no folder here from its cache, where every
    folder ever loaded under that base name lands (a `koin` folder elsewhere, a test's): the run
    would silently use whichever was cached last. Hub ids (owner/name) keep the cache fallback."""
    if datasets.config.HF_HUB_OFFLINE and "/" not in name and not os.path.exists(name):
        raise KoinError(
            f"dataset {name} not found: no folder {name} in {os.getcwd()}, and offline a bare "
            "name would be read from the datasets cache, whatever folder was last cached under "
            "it; pass the dataset folder's path, or a Hub id owner/name"
        )


def _unreachable(name: str, err: Exception) -> str:
    where = f"no folder {name} in {os.getcwd()}" if not os.path.isabs(name) else "no such folder"
    return (
        f"dataset {name} not found: {where}, and the Hub cannot be reached for it "
        f"({_reason(err)}); pass a prepared dataset folder (koin prepare) or a Hub id owner/name"
    )


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.rstrip(".")


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
    _refuse_offline_bare_name(str(name_or_path))
    try:
        return list(datasets.get_dataset_config_names(str(name_or_path)))
    except ConnectionError as err:
        raise KoinError(_unreachable(str(name_or_path), err)) from err
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
