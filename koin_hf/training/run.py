"""Trainer assembly: everything `train.py` does, from arguments to a pipeline-ready model dir.

The steps, in order: resolve the dataset (the embedded synthetic KoIn by default), carve a
stratified validation split from train (never from a test set: the KoIn notebooks selected on
test), optionally draw N shots per class, build the model from the family registry, wrap it with
LoRA or freeze its backbone, train with the transformers Trainer under Accelerate while scoring
validation and every test config, then save a merged model that `pipeline()` loads without peft.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from transformers import EarlyStoppingCallback, ProgressCallback, TrainerCallback, set_seed
from transformers.trainer import TRAINING_ARGS_NAME

from koin_hf.data import transforms
from koin_hf.errors import KoinError
from koin_hf.folder_lock import follow_umask
from koin_hf.hub.model_card import write_model_card
from koin_hf.models import lora
from koin_hf.models.loading import (
    load_model_and_processor,
    processor_for_trainer,
    save_processor,
)
from koin_hf.models.registry import ModelFamily
from koin_hf.models.zero_shot import init_head_from_text, zero_shot_text_embeddings
from koin_hf.run_record import SYNTHETIC_DATASET, LoraSettings, RunRecord
from koin_hf.runtime import STAGE, configure_process
from koin_hf.training.arguments import (
    DataArguments,
    KoinTrainingArguments,
    ModelArguments,
    parse_arguments,
)
from koin_hf.training.checkpoints import checkpoints_dir
from koin_hf.training.console import QuietProgressCallback, configure_logging
from koin_hf.training.output_dir import claimed_output_dir
from koin_hf.training.publishing import HubSettings, push_trained_model, take_hub_settings
from koin_hf.training.splits import load_splits
from koin_hf.training.trainer import (
    AugmentationClockCallback,
    KoinTrainer,
    ReleaseMemoryCallback,
    UmaskCallback,
    compute_metrics_counting_samples,
)
from koin_hf.version import __version__

logger = logging.getLogger(__name__)

FEWSHOT_IDS_FILE = "fewshot_ids.json"


def _default_output_dir(model_name_or_path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model_name_or_path).name or model_name_or_path)
    return f"outputs/koin-{slug.strip('-') or 'model'}"


def _init_head_from_class_names(
    model, family, model_args: ModelArguments, names: list[str]
) -> None:
    """Start the head from the text embeddings of prompts built from the class names."""
    if not family.has_text_tower:
        raise KoinError(
            f"--zero_shot_head_init needs a CLIP model (a family with a text tower), "
            f"not the {family.name!r} family"
        )
    if model_args.model_name_or_path.endswith("-tiny"):
        raise KoinError(
            "--zero_shot_head_init needs a CLIP checkpoint with its text tower (a Hub id or folder), "
            f"not the random {model_args.model_name_or_path!r}"
        )
    checkpoint = _base_model(model_args.model_name_or_path, family)
    embeddings = zero_shot_text_embeddings(checkpoint, names, model_args.prompt_template)
    init_head_from_text(model, embeddings, clip_model=checkpoint)


def _prepare_model(model_args: ModelArguments, names: list[str], seed: int, verbose: bool = True):
    model, processor, family = load_model_and_processor(
        model_args.model_name_or_path,
        names,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        seed=seed,
        report_replaced_head=verbose,
    )
    if model_args.zero_shot_head_init:
        _init_head_from_class_names(model, family, model_args, names)
    if model_args.lora:
        config = lora.lora_config(
            family,
            r=model_args.lora_r,
            alpha=model_args.lora_alpha,
            dropout=model_args.lora_dropout,
            target_modules=model_args.lora_target_modules or None,
        )
        model = lora.apply_lora(model, family, config)
    elif model_args.freeze_backbone:
        lora.freeze_backbone(model, family)
    trainable, total = lora.count_parameters(model)
    logger.info(
        "model: %s (%s family, %s training) for %d classes, %s of %s parameters trainable (%.2f%%)",
        model_args.model_name_or_path,
        family.name,
        model_args.method.replace("_", " "),
        len(names),
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
        extra=STAGE,
    )
    return model, processor, family, (trainable, total)


def _base_model(model_name_or_path: str, family: ModelFamily) -> str:
    """What the card's `base_model` should name: the checkpoint a family name stands for."""
    if model_name_or_path == family.name:
        return family.default_checkpoint
    return model_name_or_path


def _precision(args: KoinTrainingArguments) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def results_table(metrics: dict[str, float], eval_sets: dict[str, Any]) -> str:
    """The short end-of-run table: one row per scored set."""
    lines = [f"{'set':<11} {'images':>7} {'top-1':>7} {'top-3':>7}", "-" * 35]
    for name in eval_sets:
        top1 = metrics.get(f"eval_{name}_top1_accuracy")
        top3 = metrics.get(f"eval_{name}_top3_accuracy")
        if top1 is None:
            continue
        top3_text = f"{100 * top3:6.2f}%" if top3 is not None else "    n/a"
        lines.append(f"{name:<11} {len(eval_sets[name]):>7} {100 * top1:6.2f}% {top3_text}")
    return "\n".join(lines)


def _save_outputs(trainer, model_args, training_args, processor, record: RunRecord) -> None:
    """Merged weights, real id2label, processor, and the files koin evaluate / push read."""
    output_dir = Path(training_args.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if model_args.lora:
        if model_args.save_adapter and trainer.is_world_process_zero():
            model.save_pretrained(output_dir / "adapter")
        # Merge so pipeline() never meets an adapter it would silently skip (transformers #36480).
        model = lora.merge_lora(model)
    trainer.model = trainer.model_wrapped = model  # the merged model is what later steps use
    if trainer.is_world_process_zero():
        model.save_pretrained(output_dir, safe_serialization=True)
        save_processor(processor, output_dir)
        # What Trainer.save_model writes beside the weights, for whoever reproduces the run.
        torch.save(trainer.args, output_dir / TRAINING_ARGS_NAME)
        record.save(output_dir)
        write_model_card(output_dir)  # README.md: the Hub card, readable before any push
        follow_umask(output_dir)  # weights and checkpoints are written 0600 by safetensors


def _scored_during_training(
    eval_sets: dict[str, Any], training_args: KoinTrainingArguments
) -> dict[str, Any]:
    """The sets evaluated at each epoch: validation (it picks the checkpoint), or all of them.

    The test sets are scored once at the end unless --eval_test_sets_each_epoch asks for their
    per-epoch curves. Without a validation split there is nothing to select on, so the test
    sets are scored at each evaluation as before (they still never pick the checkpoint).
    """
    if training_args.eval_test_sets_each_epoch or "validation" not in eval_sets:
        return eval_sets
    return {"validation": eval_sets["validation"]}


def build_trainer(
    model,
    processor,
    training_args: KoinTrainingArguments,
    train,
    eval_sets: dict[str, Any] | None,
    clock: transforms.AugmentationClock,
    extra_callbacks: Sequence[TrainerCallback] = (),
) -> KoinTrainer:
    """The Trainer train.py runs: KoIn collation and metrics, the augmentation clock, early stop.

    `train` and `eval_sets` already carry their transforms. Benchmarks build it here too, so
    what they time is exactly what train.py runs.
    """
    callbacks: list[TrainerCallback] = [
        AugmentationClockCallback(clock),
        *([] if training_args.verbose else [QuietProgressCallback()]),
        UmaskCallback(),
        ReleaseMemoryCallback(),
        *extra_callbacks,
    ]
    if training_args.early_stopping_patience:
        callbacks.append(
            EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience)
        )
    trainer = KoinTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=eval_sets,
        data_collator=transforms.collate,
        compute_metrics=compute_metrics_counting_samples(model.config.num_labels),
        processing_class=processor_for_trainer(processor),  # run.py saves the processor itself
        callbacks=callbacks,
    )
    if not training_args.verbose:  # QuietProgressCallback draws the one bar, prints no dicts
        trainer.remove_callback(ProgressCallback)
    return trainer


def run_training(
    model_args: ModelArguments, data_args: DataArguments, training_args: KoinTrainingArguments
) -> dict[str, float]:
    """Train, evaluate, save; return every final metric (also in OUTPUT_DIR/all_results.json).

    The output folder is claimed for the whole run first (training/output_dir.py): a second
    run into it, or a folder holding a different run, is refused before any data is read.
    """
    if training_args.output_dir in (None, "trainer_output"):
        training_args.output_dir = _default_output_dir(model_args.model_name_or_path)
    hub = take_hub_settings(training_args)  # before anything saves the args: no token on disk
    with claimed_output_dir(model_args, data_args, training_args) as checkpoint:
        return _train_in_claimed_dir(model_args, data_args, training_args, checkpoint, hub)


def _train_in_claimed_dir(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: KoinTrainingArguments,
    checkpoint: str | None,
    hub: HubSettings | None,
) -> dict[str, float]:
    started = time.time()
    set_seed(training_args.seed)
    with training_args.main_process_first(desc="preparing the dataset"):
        dataset_name, names, train, eval_sets = load_splits(data_args, training_args)
    logger.info("data: %s", _data_summary(dataset_name, data_args, train, eval_sets), extra=STAGE)
    model, processor, family, (trainable, total) = _prepare_model(
        model_args, names, training_args.seed, verbose=training_args.verbose
    )

    image_col, label_col = data_args.image_column_name, data_args.label_column_name
    # Training images are decoded by our transform (reduced-size JPEG decode), not by datasets.
    train = train.cast_column(image_col, datasets.Image(decode=False))
    clock = transforms.AugmentationClock(training_args.seed)
    train = transforms.apply_transform(
        train, transforms.make_train_transform(processor, image_col, label_col, clock=clock)
    )
    eval_transform = transforms.make_eval_transform(processor, image_col, label_col)
    eval_sets = {
        name: transforms.apply_transform(ds, eval_transform) for name, ds in eval_sets.items()
    }

    trainer = build_trainer(
        model,
        processor,
        training_args,
        train,
        _scored_during_training(eval_sets, training_args),
        clock,
    )
    logger.info("train: %s", _training_summary(trainer, training_args), extra=STAGE)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(train_result.metrics)
    logger.info("score: %s", _scoring_summary(trainer, eval_sets), extra=STAGE)
    # Every set, once, from the chosen checkpoint (load_best_model_at_end has loaded it).
    metrics.update(trainer.evaluate(eval_dataset=eval_sets))
    metrics.update({f"eval_{name}_num_images": len(dataset) for name, dataset in eval_sets.items()})
    train_images = len(train) if isinstance(train, datasets.Dataset) else None  # a stream has none
    if train_images is not None:
        metrics["train_num_images"] = train_images
    trainer.save_metrics("all", metrics)

    record = RunRecord(
        family=family.name,
        base_model=_base_model(model_args.model_name_or_path, family),
        method=model_args.method,
        lora=LoraSettings(
            r=model_args.lora_r,
            alpha=model_args.lora_alpha,
            dropout=model_args.lora_dropout,
            target_modules=list(model_args.lora_target_modules or family.lora_target_modules),
        )
        if model_args.lora
        else None,
        zero_shot_head_init=model_args.zero_shot_head_init,
        shots_per_class=data_args.shots_per_class,
        seed=training_args.seed,
        num_train_epochs=training_args.num_train_epochs,
        global_steps=trainer.state.global_step,
        learning_rate=training_args.learning_rate,
        precision=_precision(training_args),
        world_size=trainer.accelerator.num_processes,
        dataset=dataset_name if data_args.dataset_name else SYNTHETIC_DATASET,
        dataset_config=data_args.dataset_config_name,
        eval_sets=list(eval_sets),
        train_images=train_images,
        trainable_parameters=trainable,
        total_parameters=total,
        best_checkpoint_metric=training_args.metric_for_best_model,
        train_seconds=round(time.time() - started, 1),
        data_args=asdict(data_args),
        koin_hf_version=__version__,
        transformers_version=transformers.__version__,
    )
    if (
        data_args.shots_per_class
        and trainer.is_world_process_zero()
        and "image_id" in train.column_names
    ):
        ids = sorted(train.with_format(None, columns=["image_id"])["image_id"])
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(training_args.output_dir) / FEWSHOT_IDS_FILE).write_text(
            json.dumps(
                {
                    "shots_per_class": data_args.shots_per_class,
                    "seed": training_args.seed,
                    "image_ids": ids,
                },
                indent=2,
            )
            + "\n"
        )
    _save_outputs(trainer, model_args, training_args, processor, record)
    if hub and trainer.is_world_process_zero():  # koin push's file selection and card
        push_trained_model(hub, training_args.output_dir)
    if trainer.is_world_process_zero() and not training_args.keep_checkpoints:
        # The run succeeded: its checkpoints served resuming and picking the best epoch.
        shutil.rmtree(checkpoints_dir(training_args.output_dir), ignore_errors=True)
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        print("\n" + results_table(metrics, eval_sets), flush=True)
        print(f"\nEvery metric: {output_dir / 'all_results.json'}")
        print(f"Saved a pipeline-ready model (with its card, README.md) to {output_dir}")
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float, np.floating))
    }


def _data_summary(dataset_name: str, data_args: DataArguments, train, eval_sets) -> str:
    source = (
        f"{dataset_name} ({data_args.dataset_config_name})"
        if data_args.dataset_name
        else f"the embedded synthetic KoIn ({data_args.synthetic_num_classes} identities)"
    )
    train_size = (
        f"{len(train)} training images" if isinstance(train, datasets.Dataset) else "a stream"
    )
    scored = ", ".join(f"{name} {len(dataset)}" for name, dataset in eval_sets.items())
    return f"{source}: {train_size}; scored: {scored}"


def _training_summary(trainer, training_args: KoinTrainingArguments) -> str:
    batch = training_args.per_device_train_batch_size * max(1, training_args.world_size)
    batch *= training_args.gradient_accumulation_steps
    if training_args.max_steps > 0:
        length = f"{training_args.max_steps} steps"
    else:
        epochs = training_args.num_train_epochs
        length = f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
        if isinstance(trainer.train_dataset, datasets.Dataset):
            steps = math.ceil(len(trainer.train_dataset) / batch) * math.ceil(epochs)
            length += f", about {steps} steps"
    picks = (
        f"; {training_args.metric_for_best_model} picks the checkpoint"
        if training_args.load_best_model_at_end
        else ""
    )
    return f"{length} of {batch} images, learning rate {training_args.learning_rate:g}{picks}"


def _scoring_summary(trainer, eval_sets: dict[str, Any]) -> str:
    best = trainer.state.best_model_checkpoint
    source = f"the best checkpoint ({Path(best).name})" if best else "the last step"
    return f"{', '.join(eval_sets)} from {source}"


def use_all_cpu_cores() -> None:
    """Undo `accelerate launch`'s single-thread default on machines without an accelerator.

    Without --cpu, accelerate's launcher exports OMP_NUM_THREADS=1 for every process, which
    halves (on 2 cores) the speed of a CPU-only run; measured here, the default run's training
    step went from 2.6 s to 5.4 s. The cores are shared among the local processes instead.
    """
    launched_by_accelerate = "ACCELERATE_MIXED_PRECISION" in os.environ
    if (
        not launched_by_accelerate
        or os.environ.get("OMP_NUM_THREADS") != "1"
        or torch.cuda.is_available()
    ):
        return
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = max(1, (os.cpu_count() or 1) // local_processes)
    if threads > torch.get_num_threads():
        torch.set_num_threads(threads)
        logger.info("using %d CPU threads per process (accelerate launch had set 1)", threads)


def main(argv: list[str] | None = None, prog: str = "train.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging(verbose="--verbose" in argv)  # before parsing: its notes are logged
    configure_process()  # a no-op when train.py already did it, before torch
    use_all_cpu_cores()
    try:
        model_args, data_args, training_args = parse_arguments(argv, prog=prog)
        if training_args.verbose != ("--verbose" in argv):  # set in a preset, or `--verbose false`
            configure_logging(training_args.verbose)
        run_training(model_args, data_args, training_args)
    except KoinError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
