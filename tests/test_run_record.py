"""The run record: one typed file written by training, read by cards, reports and koin evaluate."""

from __future__ import annotations

import json

import pytest

from koin_hf.errors import KoinError
from koin_hf.run_record import RUN_RECORD_FILE, SCHEMA_VERSION, LoraSettings, RunRecord


def test_save_and_load_round_trip(tmp_path):
    record = RunRecord(
        family="vit",
        method="lora",
        lora=LoraSettings(r=8, alpha=16, dropout=0.1, target_modules=["q_proj"]),
        shots_per_class=5,
        data_args={"dataset_name": "user/koin", "synthetic_num_classes": 10},
    )
    path = record.save(tmp_path)
    assert path.name == RUN_RECORD_FILE
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert RunRecord.load(tmp_path) == record
    assert record.dataset_name == "user/koin" and not record.is_synthetic


def test_a_record_from_before_the_schema_version_reads_as_version_1(tmp_path):
    """koin_training.json files written before the dataclass had the same keys and no version."""
    old = {"koin_hf_version": "0.1.0", "family": "lite0", "method": "full", "lora": None,
           "dataset": "synthetic-koin (embedded)", "data_args": {"dataset_name": None},
           "some_future_key": 1}  # fmt: skip
    (tmp_path / RUN_RECORD_FILE).write_text(json.dumps(old))
    record = RunRecord.load(tmp_path)
    assert record.schema_version == 1 and record.family == "lite0" and record.is_synthetic
    assert record.dataset_name is None and record.synthetic_num_classes == 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "should hold a JSON object"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "upgrade koin-hf"),
    ],
)
def test_an_untrustworthy_record_is_one_clear_error(tmp_path, content, message):
    (tmp_path / RUN_RECORD_FILE).write_text(content)
    with pytest.raises(KoinError, match=message):
        RunRecord.load(tmp_path)


def test_a_folder_without_a_record(tmp_path):
    assert RunRecord.load_if_present(tmp_path) is None
    with pytest.raises(KoinError, match="was not trained by koin-hf"):
        RunRecord.load(tmp_path)
