"""train.py's arguments: argument files, overrides, and one-line errors for unknown flags."""

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
        (["--overwrite_output_dir"], "--overwrite_output_dir (removed in transformers 5"),
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
    assert main([*BASE, "--overwrite_output_dir"]) == 2
    out = capsys.readouterr()
    assert "train.py: error: unknown argument(s)" in out.out + out.err
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
