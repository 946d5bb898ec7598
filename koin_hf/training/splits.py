"""The datasets a training run sees: train, the validation split carved from it, the test sets.

Validation is carved from train (stratified, seeded) and never from a test set: the KoIn
notebooks selected checkpoints on test. Few-shot sampling happens after the carve, so the
validation images are never among the shots.
"""

from __future__ import annotations

import logging
from typing import Any

from koin_hf.data import loading
from koin_hf.data.default_dataset import ensure_default_dataset
from koin_hf.data.sampling import sample_few_shot, stratified_sample, stratified_split
from koin_hf.errors import KoinError
from koin_hf.training.arguments import DataArguments, KoinTrainingArguments

logger = logging.getLogger(__name__)


def load_splits(data_args: DataArguments, training_args: KoinTrainingArguments):
    """Train / validation / few-shot sample, and the test sets to score, with their checks."""
    dataset_name = data_args.dataset_name or str(
        ensure_default_dataset(
            num_classes=data_args.synthetic_num_classes, verbose=training_args.verbose
        )
    )
    if data_args.streaming:
        train, validation = _streamed_train(dataset_name, data_args, training_args)
        names = loading.label_names(train, data_args.label_column_name)
    else:
        train, validation = _train_and_validation(dataset_name, data_args, training_args.seed)
        names = loading.label_names(train, data_args.label_column_name)
    if validation is not None and len(validation) == 0:
        # Trainer would fail at the first evaluation, looking for validation_top1_accuracy.
        raise KoinError(
            f"the validation split of {dataset_name} ({data_args.dataset_config_name}) is empty: "
            "a class needs at least 2 training images for one to be held out"
        )
    eval_sets = {"validation": validation} if validation is not None else {}
    eval_sets.update(_test_sets(dataset_name, data_args, names))
    if data_args.max_eval_samples:
        eval_sets = {
            name: stratified_sample(
                dataset, data_args.max_eval_samples, training_args.seed, data_args.label_column_name
            )
            for name, dataset in eval_sets.items()
        }
    return dataset_name, names, train, eval_sets


def _train_split(dataset_name: str, data_args: DataArguments, streaming: bool):
    train_dict = loading.load_prepared(
        dataset_name, data_args.dataset_config_name, streaming=streaming
    )
    if "train" not in train_dict:
        raise KoinError(
            f"config {data_args.dataset_config_name!r} of {dataset_name} has no train split "
            f"(splits: {', '.join(train_dict)})"
        )
    where = f"{dataset_name} ({data_args.dataset_config_name})"
    loading.check_columns(
        train_dict["train"].features,
        data_args.image_column_name,
        data_args.label_column_name,
        where,
    )
    return train_dict


def _train_and_validation(dataset_name: str, data_args: DataArguments, seed: int):
    train_dict = _train_split(dataset_name, data_args, streaming=False)
    label_col = data_args.label_column_name
    if "validation" in train_dict:
        train, validation = train_dict["train"], train_dict["validation"]
    else:
        train, validation = stratified_split(
            train_dict["train"], data_args.train_val_split, seed, label_col
        )
    if data_args.shots_per_class:
        train = sample_few_shot(train, data_args.shots_per_class, seed, label_col)
    return train, validation


def _streamed_train(
    dataset_name: str, data_args: DataArguments, training_args: KoinTrainingArguments
):
    """A train split read as a stream: for datasets larger than the local disk.

    A stream has no length and cannot be sampled per class without a full pass, so few-shot
    sampling and the carved validation split are not available; a `validation` split the dataset
    ships is used, otherwise the final model is the last step's.
    """
    # --shots_per_class and a missing --max_steps were refused with the arguments.
    train_dict = _train_split(dataset_name, data_args, streaming=True)
    train = train_dict["train"].shuffle(
        seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size
    )
    validation = None
    if "validation" in train_dict:
        validation = loading.load_prepared(
            dataset_name, data_args.dataset_config_name, split="validation"
        )
    else:
        training_args.load_best_model_at_end = False
        training_args.metric_for_best_model = None
        logger.warning(
            "streamed dataset has no validation split: the final model is the last step's"
        )
    return train, validation


def _test_sets(dataset_name: str, data_args: DataArguments, names: list[str]) -> dict[str, Any]:
    """The test split of every requested config that exists, with the training class names."""
    found, missing = loading.load_test_sets(
        dataset_name,
        data_args.eval_config_names,
        image_column=data_args.image_column_name,
        label_column=data_args.label_column_name,
    )
    for reason in missing.values():
        logger.warning("%s: not scored", reason)
    test_sets = {}
    for config, test in found.items():
        if loading.label_names(test, data_args.label_column_name) != names:
            raise KoinError(
                f"the {config!r} config of {dataset_name} has other class names than the training config"
            )
        test_sets[config] = test
    return test_sets
