"""`koin probe`'s settings: every bad value is one line naming its flag, before a model loads."""

from __future__ import annotations

import pytest

from koin_hf.cli import main

BAD_SETTINGS = {
    "C zero": (["--C", "0"], "--C values must be finite positive numbers, got 0.0."),
    "C nan": (["--C", "0.3", "nan"], "--C values must be finite positive numbers, got nan."),
    "C inf": (["--C", "inf"], "--C values must be finite positive numbers, got inf."),
    "no shots": (["--shots_per_class", "0"], "--shots_per_class must be at least 1, got 0."),
    "split": (["--train_val_split", "1.5"], "--train_val_split must be between 0 and 1, got 1.5."),
    "batch": (["--batch_size", "0"], "--batch_size must be at least 1, got 0."),
    "iterations": (["--max_iter", "0"], "--max_iter must be at least 1, got 0."),
    "tolerance": (["--tol", "-1"], "--tol must be a finite positive number, got -1.0."),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_settings_are_one_line_before_anything_loads(case, tmp_path, capsys):
    flags, expected = BAD_SETTINGS[case]
    # The model and dataset do not exist: the settings are refused before either is looked at.
    args = ["probe", str(tmp_path / "no-model"), "--dataset", str(tmp_path / "no-data")]
    assert main([*args, "--output_dir", str(tmp_path / "out"), *flags]) == 2
    assert capsys.readouterr().err.splitlines() == [f"koin probe: error: {expected}"]
    assert not (tmp_path / "out").exists()


def test_a_missing_dataset_is_named_before_the_model_loads(tmp_path, capsys):
    missing = tmp_path / "no-data"
    args = ["probe", str(tmp_path / "no-model"), "--dataset", str(missing)]
    assert main([*args, "--output_dir", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"koin probe: error: cannot read the dataset '{missing}'")
