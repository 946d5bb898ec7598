"""The KoIn builder (koin_hf.dataset_script.koin), run directly the way `koin prepare` runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
from rawkoin import CLASS_IDS, CLASS_NAMES, make_raw_koin, write_classes_csv, write_image

from koin_hf.dataset_script.koin import (
    Koin,
    check_layout,
    find_class_names_file,
    list_split,
    locate_raw,
    read_class_names,
)
from koin_hf.errors import KoinError


def _build(
    raw: Path, config: str, tmp_path: Path, num_proc: int | None = None, **kwargs
) -> datasets.DatasetDict:
    builder = Koin(
        config_name=config,
        data_dir=str(raw),
        cache_dir=str(tmp_path / "cache"),
        skip_log_dir=str(tmp_path / "logs"),
        **kwargs,
    )
    builder.download_and_prepare(num_proc=num_proc)
    return builder.as_dataset()


def test_configs_and_shared_class_label(tmp_path):
    raw = make_raw_koin(tmp_path / "raw")
    normal = _build(raw, "normal", tmp_path)
    hard = _build(raw, "hard", tmp_path)
    group = _build(raw, "group", tmp_path)
    assert set(normal) == {"train", "test"} and set(hard) == {"test"} and set(group) == {"test"}
    assert normal["train"].num_rows == 12 and hard["test"].num_rows == 6
    labels = [d["test"].features["label"] for d in (normal, hard, group)]
    assert labels[0].names == list(CLASS_NAMES)  # names in folder-id order
    assert labels[0] == labels[1] == labels[2]
    row = hard["test"][0]
    assert row["image_id"] == "hard_cases/test/0000/img_0.jpg"
    assert row["label"] == 0 and row["image"].mode == "RGB"


def test_hard_train_split_and_lowercase_group_folder(tmp_path):
    raw = make_raw_koin(
        tmp_path / "raw",
        per_split={"normal_cases/train": 1, "hard_cases/train": 2, "hard_cases/test": 1,
                   "group_cases/test": 1},
        names=False,
    )  # fmt: skip
    hard = _build(raw, "hard", tmp_path)
    assert {s: d.num_rows for s, d in hard.items()} == {"train": 6, "test": 3}
    group = _build(raw, "group", tmp_path)
    assert group["test"].num_rows == 3
    assert group["test"].features["label"].names == list(CLASS_IDS)  # no classes.csv: the ids


def test_wrapper_folder_and_classes_csv_at_the_top(tmp_path):
    make_raw_koin(tmp_path / "raw", wrapper="Dataset", names=False)
    write_classes_csv(tmp_path / "raw")  # next to Dataset/, not inside it
    location = locate_raw(tmp_path / "raw")
    assert location.root == tmp_path / "raw" / "Dataset"
    assert find_class_names_file(location) == tmp_path / "raw" / "classes.csv"
    assert _build(tmp_path / "raw", "group", tmp_path)["test"].features["label"].names == list(
        CLASS_NAMES
    )


def test_missing_normal_cases_names_the_path(tmp_path):
    (tmp_path / "raw" / "hard_cases" / "test").mkdir(parents=True)
    with pytest.raises(KoinError, match=f"no normal_cases folder found in {tmp_path / 'raw'}"):
        locate_raw(tmp_path / "raw")
    with pytest.raises(KoinError, match="does not exist"):
        locate_raw(tmp_path / "nowhere")
    (tmp_path / "raw" / "normal_cases" / "test").mkdir(parents=True)
    with pytest.raises(KoinError, match="normal_cases/train is missing"):
        check_layout(locate_raw(tmp_path / "raw").root)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(KoinError, match="not a .zip"):
        locate_raw(tmp_path / "notes.txt")


def test_hard_class_unknown_to_training_names_the_folder(tmp_path):
    raw = make_raw_koin(tmp_path / "raw")
    stray = raw / "hard_cases" / "test" / "0099"
    write_image(stray / "x.jpg", 0)
    with pytest.raises(KoinError, match=f"class folder {stray} is not among"):
        check_layout(raw)
    with pytest.raises(KoinError, match="0099"):
        _build(raw, "hard", tmp_path)


def _csv(tmp_path: Path, text: str, encoding="utf-8") -> Path:
    path = tmp_path / "classes.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_classes_csv_quoting_bom_unicode_and_spreadsheet_ids(tmp_path):
    text = '\ufeffID , Name,notes\n7,"Park ""Jimin"", Jr.",x\n0003,이지은\n'
    names = read_class_names(_csv(tmp_path, text), ["0003", "0007"])
    assert names == ["이지은", 'Park "Jimin", Jr.']  # "7" was "0007" before a spreadsheet
    assert read_class_names(None, ["0003"]) == ["0003"]


@pytest.mark.parametrize(
    ("text", "encoding", "message"),
    [
        ("0000,Kim\n", "utf-8", "header line"),
        ("id,name\n0000,Kim\n", "utf-8", "no name for class folder"),
        ("id,name\n0000,Kim\n0001,Kim\n", "utf-8", "same name"),
        ("id,name\n0000,Kim\n0000,Lee\n0001,Park\n", "utf-8", "a second time"),
        ("id,name\n0000,김민지\n0001,이지은\n", "cp949", "not UTF-8"),
    ],
)
def test_bad_classes_csv_is_one_clear_error(tmp_path, text, encoding, message):
    path = _csv(tmp_path, text, encoding)
    with pytest.raises(KoinError, match=message) as err:
        read_class_names(path, ["0000", "0001"])
    assert str(path) in str(err.value)


def test_split_listing_reports_every_file_it_does_not_use(tmp_path):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1}, names=False)
    split = raw / "normal_cases" / "train"
    (split / ".DS_Store").write_bytes(b"\0")
    (split / "stray.jpg").write_bytes(b"\0")
    (split / "@eaDir").mkdir()
    klass = split / "0001"
    (klass / "Thumbs.db").write_bytes(b"\0")
    (klass / "notes.txt").write_text("hi")
    (klass / "sub").mkdir()
    write_image(klass / "sub" / "nested.jpg", 1)
    (klass / "dir.jpg").mkdir()
    (klass / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(klass / "pipe.png")
    write_image(klass / "UPPER.JPG", 1)
    (split / "0002" / "img_0.jpg").unlink()  # an empty class folder
    listing = list_split(raw, split, set(CLASS_IDS))
    reasons = {p.relative_to(split).as_posix(): r for p, r in listing.skipped}
    assert set(reasons) == {
        ".DS_Store", "stray.jpg", "@eaDir", "0001/Thumbs.db", "0001/notes.txt", "0001/sub",
        "0001/dir.jpg", "0001/dangling.jpg", "0001/pipe.png",
    }  # fmt: skip
    assert reasons["0001/sub"].endswith("(1 file(s) in it not imported)")
    assert "broken symbolic link" in reasons["0001/dangling.jpg"]
    assert "not a regular file" in reasons["0001/pipe.png"]
    assert [p.name for p, _ in listing.warnings] == ["0002"]
    assert sorted(f for f, _ in listing.files) == [
        "normal_cases/train/0000/img_0.jpg",
        "normal_cases/train/0001/UPPER.JPG",
        "normal_cases/train/0001/img_0.jpg",
    ]


def test_skips_are_logged_from_worker_processes(tmp_path):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 4}, names=False)
    corrupt = []
    for class_id in CLASS_IDS:
        path = raw / "normal_cases" / "train" / class_id / "broken.jpg"
        path.write_bytes(b"\xff\xd8\xff not really a jpeg")
        corrupt.append(path)
    dataset = _build(raw, "normal", tmp_path, num_proc=2)
    assert dataset["train"].num_rows == 12
    logs = sorted((tmp_path / "logs").glob("skipped-*.jsonl"))
    worker_logs = [log for log in logs if log.stem != f"skipped-{os.getpid()}"]
    assert worker_logs, "decoding ran in worker processes, so they must have logged the skips"
    records = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    assert sorted(r["path"] for r in records) == sorted(map(str, corrupt))
    assert all("not a readable image" in r["reason"] for r in records)
