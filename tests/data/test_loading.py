"""koin_hf.data loading: prepared folders, other layouts, and the test sets a run scores."""

from __future__ import annotations

import datasets
import pytest
from PIL import Image
from rawkoin import CLASS_NAMES, make_raw_koin

from koin_hf.data import loading as koin_data
from koin_hf.data.prepare import prepare_koin
from koin_hf.errors import KoinError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared dataset with normal and hard configs and no group config."""
    root = tmp_path_factory.mktemp("data")
    raw = make_raw_koin(
        root / "raw",
        per_split={"normal_cases/train": 2, "normal_cases/test": 1, "hard_cases/test": 1},
    )
    prepare_koin(raw, root / "prepared", verbose=False)
    return root / "prepared"


def test_test_sets_found_and_missing_configs_named(prepared):
    found, missing = koin_data.load_test_sets(prepared, ["normal", "hard", "group"])
    assert list(found) == ["normal", "hard"]
    assert [len(found[c]) for c in found] == [3, 3]
    assert found["hard"].features["label"].names == list(CLASS_NAMES)
    assert list(missing) == ["group"]
    assert "no 'group' config" in missing["group"] and "hard, normal" in missing["group"]


def test_required_test_sets_fail_with_one_line(prepared):
    with pytest.raises(KoinError, match="no 'group' config") as error:
        koin_data.load_test_sets(prepared, ["normal", "group"], required=True)
    assert "\n" not in str(error.value)
    with pytest.raises(KoinError, match="no 'validation' split"):
        koin_data.load_test_sets(prepared, ["hard"], split="validation", required=True)


def test_a_missing_split_is_a_reason_unless_required(prepared):
    found, missing = koin_data.load_test_sets(prepared, ["normal", "hard"], split="train")
    assert list(found) == ["normal"] and len(found["normal"]) == 6
    assert "no 'train' split" in missing["hard"]


def test_wrong_columns_are_an_error_never_a_skip(prepared):
    with pytest.raises(KoinError, match="no label column 'identity'"):
        koin_data.load_test_sets(prepared, ["normal"], label_column="identity")
    renamed = {"normal": datasets.Dataset.from_dict({"image": [None], "label": [0]})}
    with pytest.raises(KoinError, match="'label' is not a ClassLabel"):
        koin_data.load_test_sets(renamed, ["normal"])


def test_mapping_of_datasets_is_a_source(prepared):
    normal = koin_data.load_prepared(prepared, "normal", split="test")
    found, missing = koin_data.load_test_sets({"normal": normal}, ["normal", "hard"])
    assert found == {"normal": normal}
    assert "the given datasets has no 'hard' config" in missing["hard"]


def test_unreadable_dataset_is_one_line(tmp_path):
    with pytest.raises(KoinError, match="cannot read the dataset"):
        koin_data.load_test_sets(tmp_path / "nothing-here", ["normal"])


def test_load_prepared_reads_parquet_and_other_layouts(prepared, tmp_path):
    """Parquet is read without pre-buffering, into the very cache a plain load_dataset uses."""
    hard = koin_data.load_prepared(prepared, "hard", split="test")
    plain = datasets.load_dataset(str(prepared), "hard", split="test")
    assert hard.cache_files == plain.cache_files
    streamed = koin_data.load_prepared(prepared, "hard", split="test", streaming=True)
    assert sorted(row["image_id"] for row in streamed) == sorted(hard["image_id"])
    assert sorted(hard["image_id"]) == [
        f"hard_cases/test/{c}/img_0.jpg" for c in ("0000", "0001", "0002")
    ]
    for name in ("cat", "dog"):  # an imagefolder: a builder that would reject the option
        (tmp_path / "folder" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "folder" / name / "1.jpg")
    folder = koin_data.load_prepared(tmp_path / "folder", "default", split="train")
    assert folder.features["label"].names == ["cat", "dog"] and len(folder) == 2
