"""train.py's arguments: argument files, overrides, validation, one-line errors for any mistake."""

from __future__ import annotations

import pytest

from koin_hf.errors import KoinError
from koin_hf.training.arguments import parse_arguments
from koin_hf.training.run import main

BASE = ["--output_dir", "unused-out", "--model_name_or_path", "vit-tiny"]


def test_argument_files_apply_in_order_and_flags_override(tmp_path):
    family = tmp_path / "family.yaml"
    family.write_text("learning_rate: 0.001\nlora: true\nlora_target_modules: [query, value]\n")
    protocol = tmp_path / "protocol.json"
    protocol.write_text('{"learning_rate": 0.002, "shots_per_class": 5}')
    model_args, data_args, training_args = parse_arguments(
        [str(family), str(protocol), *BASE, "--shots_per_class", "50"]
    )
    assert training_args.learning_rate == 0.002  # the later file wins over the earlier one
    assert data_args.shots_per_class == 50  # and the command line over both
    assert model_args.lora and model_args.lora_target_modules == ["query", "value"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--evaluation_strategy", "no"], "--evaluation_strategy (renamed --eval_strategy"),
        (["--learnig_rate", "1e-3"], "--learnig_rate (did you mean --learning_rate?)."),
        (["stray"], "'stray' (a value without a flag)"),
        (["--no_such_flag=3"], "--no_such_flag. See"),
    ],
)
def test_unknown_arguments_are_one_line_naming_them(extra, expected):
    with pytest.raises(KoinError) as error:
        parse_arguments([*BASE, *extra])
    message = str(error.value)
    assert expected in message and "\n" not in message


def test_an_unknown_key_in_an_argument_file_is_named_once(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("seed: 3\nlearnig_rate: [0.1, 0.2]\n")
    with pytest.raises(KoinError, match=r"--learnig_rate \(did you mean --learning_rate\?\)\. See"):
        parse_arguments([str(preset), *BASE])


def test_train_py_exits_2_with_the_error_and_no_traceback(capsys):
    assert main([*BASE, "--evaluation_strategy", "no"]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("train.py: error: unknown argument(s)") and out.out == ""
    assert "Traceback" not in out.out + out.err


def test_abbreviated_flags_are_refused_with_the_full_name():
    """argparse would take --learning_rat for --learning_rate without a word; koin-hf does not."""
    with pytest.raises(KoinError, match=r"--learning_rat \(did you mean --learning_rate\?\)"):
        parse_arguments([*BASE, "--learning_rat", "0.01"])


def test_hyphenated_spelling_is_an_alias():
    _, data_args, training_args = parse_arguments(
        [*BASE, "--learning-rate", "0.01", "--shots-per-class", "3"]
    )
    assert training_args.learning_rate == 0.01 and data_args.shots_per_class == 3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be at least 1, got 0"),
        (["--per_device_eval_batch_size", "-2"], "--per_device_eval_batch_size must be at least 1, got -2"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be at least 1"),
        (["--learning_rate", "nan"], "--learning_rate must be a finite number above 0, got nan"),
        (["--learning_rate", "inf"], "--learning_rate must be a finite number above 0, got inf"),
        (["--learning_rate", "0"], "--learning_rate must be a finite number above 0, got 0.0"),
        (["--weight_decay", "-1"], "--weight_decay must be a finite number of at least 0"),
        (["--num_train_epochs", "0"], "--num_train_epochs must be above 0 (or set --max_steps), got 0.0"),
        (["--num_train_epochs", "-1"], "--num_train_epochs must be above 0 (or set --max_steps), got -1.0"),
        (["--max_steps", "0"], "--max_steps must be a positive number of steps (or -1, the default"),
        (["--max_steps", "-3"], "--max_steps must be a positive number of steps"),
        (["--shots_per_class", "0"], "--shots_per_class must be at least 1, got 0 (leave it out"),
        (["--lora", "--lora_r", "0"], "--lora_r must be at least 1, got 0"),
        (["--lora_alpha", "0"], "--lora_alpha must be above 0, got 0"),
        (["--lora_dropout", "1"], "--lora_dropout must be at least 0 and below 1, got 1.0"),
        (["--lora_dropout", "-0.1"], "--lora_dropout must be at least 0 and below 1, got -0.1"),
        (["--lora", "--freeze_backbone"], "choose one of --lora and --freeze_backbone"),
        (["--train_val_split", "0"], "--train_val_split must be between 0 and 1 (exclusive), got 0.0"),
        (["--train_val_split", "1"], "--train_val_split must be between 0 and 1 (exclusive), got 1.0"),
        (["--max_eval_samples", "0"], "--max_eval_samples must be at least 1, got 0"),
        (["--synthetic_num_classes", "1"], "--synthetic_num_classes must be at least 2, got 1"),
        (["--shuffle_buffer_size", "0"], "--shuffle_buffer_size must be at least 1, got 0"),
        (["--dataloader_num_workers", "-1"], "--dataloader_num_workers must be at least 0, got -1"),
        (["--dataset_name", " "], "--dataset_name is empty"),
        (["--early_stopping_patience", "0"], "--early_stopping_patience must be at least 1, got 0"),
        (["--eval_strategy", "no", "--early_stopping_patience", "2"], "--early_stopping_patience needs evaluations"),
        (["--eval_strategy", "no", "--save_strategy", "best"], "--save_strategy best needs evaluations"),
        (["--streaming"], "--streaming needs --max_steps: a stream has no length"),
        (["--streaming", "--max_steps", "5", "--shots_per_class", "2"], "--shots_per_class needs the whole train split: drop --streaming"),
        # Mistakes argparse finds: one line, no usage text.
        (["--learning_rate", "abc"], "argument --learning_rate/--learning-rate: invalid float value: 'abc'"),
        (["--eval_strategy", "sometimes"], "invalid choice: 'sometimes' (choose from 'no', 'steps', 'epoch')"),
        (["--per_device_train_batch_size"], "argument --per_device_train_batch_size/--per-device-train-batch-size: expected one argument"),
        # TrainingArguments' own checks, made one line.
        (["--eval_strategy", "no", "--load_best_model_at_end", "true"], "--load_best_model_at_end needs evaluations to pick from"),
        (["--eval_strategy", "steps", "--eval_steps", "5"],
         "invalid training arguments: --load_best_model_at_end requires the save and eval strategy to match, "
         'except when --save_strategy="best", but found Evaluation strategy: IntervalStrategy.STEPS Save strategy: '
         "SaveStrategy.EPOCH (koin-hf turns --load_best_model_at_end on by default; pass --load_best_model_at_end false"),
        (["--warmup_steps", "-1"], "invalid training arguments: Got warmup_steps = -1.0, Expected value warmup_steps >= 0"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_one_line_naming_the_flag(extra, expected):
    with pytest.raises(KoinError) as error:
        parse_arguments([*BASE, *extra])
    message = str(error.value)
    assert expected in message and "\n" not in message


def test_values_at_the_edges_are_accepted():
    _, data_args, training_args = parse_arguments(
        [*BASE, "--max_steps", "5", "--num_train_epochs", "0", "--shots_per_class", "1",
         "--lora_dropout", "0", "--max_eval_samples", "1", "--synthetic_num_classes", "2"]
    )  # fmt: skip
    assert training_args.max_steps == 5 and data_args.shots_per_class == 1


def test_eval_strategy_no_saves_the_last_step_instead_of_the_best(caplog):
    _, _, training_args = parse_arguments([*BASE])
    assert training_args.load_best_model_at_end is True  # the default when there are evaluations
    assert training_args.metric_for_best_model == "validation_top1_accuracy"
    with caplog.at_level("INFO", logger="koin_hf.training.arguments"):
        _, _, training_args = parse_arguments([*BASE, "--eval_strategy", "no"])
    assert training_args.load_best_model_at_end is False
    assert training_args.metric_for_best_model is None
    assert "--eval_strategy no: no evaluations to pick the best checkpoint from" in caplog.text
    _, _, training_args = parse_arguments(
        [*BASE, "--eval_strategy", "steps", "--save_strategy", "steps", "--load_best_model_at_end", "false"]
    )  # fmt: skip
    assert training_args.load_best_model_at_end is False


def test_koin_train_passes_every_flag_to_train_py(capsys):
    """`koin train --flag` once fell to `koin`'s own parser, which refused train.py's flags."""
    from koin_hf.cli import main as koin

    assert koin(["train", *BASE, "--learning_rate", "0"]) == 2
    out = capsys.readouterr()
    assert (
        out.err == "koin train: error: --learning_rate must be a finite number above 0, got 0.0\n"
    )
