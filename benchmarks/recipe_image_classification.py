"""The plain transformers recipe, as a user would write it from transformers' example script.

A faithful, self-contained version of `examples/pytorch/image-classification/
run_image_classification.py`: `load_dataset` + torchvision transforms attached with
`set_transform` + `Trainer`, evaluating (and checkpointing) every epoch and keeping the best
epoch. What differs from the example, and why:

- the validation split is stratified (`stratify_by_column`), as koin-hf's is, so both runs
  select their checkpoint on the same kind of split;
- accuracy is computed with numpy (top-1 and top-3) instead of `evaluate.load("accuracy")`,
  which needs the Hub;
- the timm-wrapped EfficientNet-Lite0 processor keeps its input size in `data_config`, which the
  example's `size` lookup does not know;
- at the end the test split of every requested config is scored, for the accuracy table.

It imports nothing from koin-hf: it is the baseline koin-hf is measured against
(benchmarks/bench_end_to_end.py). Results go to OUTPUT_DIR/test_results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from torchvision.transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)


def _input_size(processor) -> tuple[int, int]:
    data_config = getattr(processor, "data_config", None)
    if data_config and "input_size" in data_config:  # timm wrapper
        _, height, width = data_config["input_size"]
        return height, width
    size = processor.size
    if "shortest_edge" in size:
        return size["shortest_edge"], size["shortest_edge"]
    return size["height"], size["width"]


def _normalization(processor) -> tuple[list[float], list[float]]:
    data_config = getattr(processor, "data_config", None)
    if data_config and "mean" in data_config:
        return list(data_config["mean"]), list(data_config["std"])
    return list(processor.image_mean), list(processor.image_std)


def _collate(examples):
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["label"] for example in examples]),
    }


def _compute_metrics(prediction) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids
    top3 = np.argsort(-logits, axis=1)[:, :3]
    return {
        "accuracy": float((top3[:, 0] == labels).mean()),
        "top3_accuracy": float((top3 == labels[:, None]).any(axis=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_name", required=True)
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--eval_config_names", nargs="+", default=["normal", "hard", "group"])
    parser.add_argument("--train_val_split", type=float, default=0.15)
    parser.add_argument("--num_train_epochs", type=float, default=3)
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_steps", type=int, default=-1)
    args = parser.parse_args()
    set_seed(args.seed)

    dataset = load_dataset(args.dataset_name, "normal")
    split = dataset["train"].train_test_split(
        test_size=args.train_val_split, stratify_by_column="label", seed=args.seed
    )
    train, validation = split["train"], split["test"]
    names = train.features["label"].names
    label2id = {name: index for index, name in enumerate(names)}
    id2label = dict(enumerate(names))

    config = AutoConfig.from_pretrained(
        args.model_name_or_path,
        num_labels=len(names),
        label2id=label2id,
        id2label=id2label,
        finetuning_task="image-classification",
    )
    model = AutoModelForImageClassification.from_pretrained(
        args.model_name_or_path, config=config, ignore_mismatched_sizes=True
    )
    processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)

    size = _input_size(processor)
    normalize = Normalize(*_normalization(processor))
    train_transforms = Compose(
        [RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), normalize]
    )
    val_transforms = Compose([Resize(size), CenterCrop(size), ToTensor(), normalize])

    def preprocess_train(batch):
        batch["pixel_values"] = [train_transforms(image.convert("RGB")) for image in batch["image"]]
        return batch

    def preprocess_val(batch):
        batch["pixel_values"] = [val_transforms(image.convert("RGB")) for image in batch["image"]]
        return batch

    train.set_transform(preprocess_train)
    validation.set_transform(preprocess_val)

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        remove_unused_columns=False,
        learning_rate=args.learning_rate,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        logging_strategy="steps",
        logging_steps=10,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        save_total_limit=3,
        seed=args.seed,
        report_to="none",
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        compute_metrics=_compute_metrics,
        processing_class=processor,
        data_collator=_collate,
    )
    trainer.train()
    trainer.save_model()
    results = trainer.evaluate(metric_key_prefix="eval_validation")
    for config_name in args.eval_config_names:
        test = load_dataset(args.dataset_name, config_name, split="test")
        test.set_transform(preprocess_val)
        results.update(trainer.evaluate(test, metric_key_prefix=f"eval_{config_name}"))
    Path(args.output_dir, "test_results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
