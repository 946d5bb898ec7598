"""`koin prepare`: a messy raw KoIn tree becomes a dataset that load_dataset reads, row for row."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from peak_memory import run_measured
from PIL import Image
from rawkoin import (
    CLASS_IDS,
    CLASS_NAMES,
    QUADRANT_COLOURS,
    bomb_png,
    close,
    exif_rotated_jpeg,
    image_files,
    make_raw_koin,
    png16_rgb,
    quadrant_array,
    quadrant_colours_of,
    write_image,
)

from koin_hf.cli import main
from koin_hf.data.prepare import REPORT_FILE, prepare_koin
from koin_hf.dataset_script.koin import printable
from koin_hf.folder_lock import claim_folder

SPLIT_FOLDERS = {
    ("normal", "train"): "normal_cases/train",
    ("normal", "test"): "normal_cases/test",
    ("hard", "test"): "hard_cases/test",
    ("group", "test"): "Group_cases/test",
}


def _save(path: Path, image: Image.Image, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **kwargs)


def _add_tricky_images(raw: Path) -> None:
    """Valid photos of every awkward kind: each must become exactly one upright RGB row."""
    train = raw / "normal_cases" / "train"
    (train / "0000" / "rotated.JPG").write_bytes(exif_rotated_jpeg(6))
    _save(train / "0000" / "cmyk.jpg", Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")
    _save(train / "0001" / "gray.png", Image.new("L", (30, 30), 90), "PNG")
    quadrants = Image.fromarray(quadrant_array(), "RGB")
    _save(train / "0001" / "palette.gif", quadrants.quantize(8), "GIF")
    _save(train / "0001" / "rgba.PNG", quadrants.convert("RGBA"), "PNG")
    (train / "0001" / "deep.png").write_bytes(png16_rgb(np.full((20, 30, 3), 40000, np.uint16)))
    _save(train / "0002" / "photo.webp", quadrants, "WEBP", lossless=True)
    write_image(train / "0002" / "UPPER.JPEG", 2)


def _add_bad_files(raw: Path, dangling_target: Path) -> dict[str, str]:
    """Files that are no usable image; returns {relative path: expected words of the reason}."""
    train = raw / "normal_cases" / "train"
    whole_path = train / "0000" / "img_0.jpg"
    whole = whole_path.read_bytes()
    (train / "0000" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (train / "0000" / "empty.jpg").write_bytes(b"")
    (train / "0001" / "corrupt.png").write_bytes(os.urandom(500))
    (train / "0001" / "readme.txt").write_text("notes")
    (train / "0002" / ".DS_Store").write_bytes(b"\0\0")
    (train / "0002" / "Thumbs.db").write_bytes(b"\0\0")
    (train / "0002" / "gone.jpg").symlink_to(dangling_target)
    (train / "0002" / "folder.jpg").mkdir()
    (raw / "hard_cases" / "test" / ".hidden.jpg").write_bytes(whole)
    write_image(raw / "hard_cases" / "val" / "0000" / "a.jpg", 0)  # not a KoIn split
    # cp949 bytes for "김" in names, as a Windows zip leaves them: not valid UTF-8.
    test_class = os.fsencode(raw / "normal_cases" / "test" / "0001")
    shutil.copy(whole_path, os.path.join(test_class, b"\xb1\xe8.jpg"))
    Path(os.fsdecode(os.path.join(test_class, b"\xb1\xe8.txt"))).write_text("x")
    (raw / "normal_cases" / ".DS_Store").write_bytes(b"\0")
    return {
        "normal_cases/train/0000/truncated.jpg": "truncated",
        "normal_cases/train/0000/empty.jpg": "empty file",
        "normal_cases/train/0001/corrupt.png": "not a readable image",
        "normal_cases/train/0001/readme.txt": "not an image file",
        "normal_cases/train/0002/.DS_Store": "system file",
        "normal_cases/train/0002/Thumbs.db": "system file",
        "normal_cases/train/0002/gone.jpg": "broken symbolic link",
        "normal_cases/train/0002/folder.jpg": "folder",
        "hard_cases/test/.hidden.jpg": "hidden file",
        "hard_cases/val": "not a split folder of hard_cases (expected train or test)",
        "normal_cases/.DS_Store": "system file",
        "normal_cases/test/0001/\\xb1\\xe8.txt": "not an image file",
    }


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """One messy raw tree prepared once; tests below read the result."""
    base = tmp_path_factory.mktemp("messy")
    raw = make_raw_koin(base / "raw", per_split={k: 2 for k in SPLIT_FOLDERS.values()})
    _add_tricky_images(raw)
    expected_skips = _add_bad_files(raw, base / "missing.jpg")
    shutil.rmtree(raw / "Group_cases" / "test" / "0002")
    (raw / "Group_cases" / "test" / "0002").mkdir()  # empty class folder: a warning
    valid = {printable(p) for p in image_files(raw) if not p.startswith("hard_cases/val")}
    valid -= set(expected_skips)
    assert "normal_cases/test/0001/\\xb1\\xe8.jpg" in valid  # kept, with a visible escape
    out = base / "prepared"
    report = prepare_koin(raw, out)
    return {"raw": raw, "out": out, "report": report, "valid": valid, "skips": expected_skips}


def _load(out: Path | str, config: str, cache: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(out), config, cache_dir=str(cache))


def test_every_valid_image_is_exactly_one_row(messy, tmp_path):
    rows = {}
    for (config, split), folder in SPLIT_FOLDERS.items():
        dataset = _load(messy["out"], config, tmp_path)[split]
        ids = dataset["image_id"]
        assert len(ids) == len(set(ids)), f"{config}/{split} has duplicate image_ids"
        assert all(i.startswith(folder + "/") for i in ids)
        rows.update({i: dataset.features["label"].int2str(label) for i, label in
                     zip(ids, dataset["label"], strict=True)})  # fmt: skip
    assert set(rows) == messy["valid"]
    for image_id, name in rows.items():  # the label is the class folder the file sat in
        assert name == CLASS_NAMES[CLASS_IDS.index(image_id.split("/")[2])]


def test_every_skipped_file_is_reported_with_its_reason(messy):
    skipped = {r["path"]: r["reason"] for r in messy["report"]["skipped"]}
    assert set(skipped) == set(messy["skips"])
    for path, words in messy["skips"].items():
        assert words in skipped[path], (path, skipped[path])
    on_disk = json.loads((messy["out"] / REPORT_FILE).read_text(encoding="utf-8"))
    assert on_disk["skipped"] == messy["report"]["skipped"]
    warnings = [(w["path"], w["reason"]) for w in on_disk["warnings"]]
    assert warnings == [("Group_cases/test/0002", "empty class folder")]


def test_report_counts_images_per_config_split_and_class(messy):
    report = messy["report"]
    assert report["class_names"] == list(CLASS_NAMES)
    for (config, split), folder in SPLIT_FOLDERS.items():
        summary = report["configs"][config][split]
        expected = {
            name: sum(1 for p in messy["valid"] if p.startswith(f"{folder}/{class_id}/"))
            for class_id, name in zip(CLASS_IDS, CLASS_NAMES, strict=True)
        }
        assert summary["per_class"] == expected
        assert summary["images"] == sum(expected.values())
    assert report["total_images"] == len(messy["valid"])


def test_tricky_images_are_stored_upright_rgb_and_small(messy, tmp_path):
    train = _load(messy["out"], "normal", tmp_path)["train"]
    by_id = dict(zip(train["image_id"], range(train.num_rows), strict=True))

    def image(name: str) -> Image.Image:
        return train[by_id[f"normal_cases/train/{name}"]]["image"]

    rotated = image("0000/rotated.JPG")
    assert rotated.size == (64, 48)
    assert all(
        close(a, b) for a, b in zip(quadrant_colours_of(rotated), QUADRANT_COLOURS, strict=True)
    )
    assert close(image("0000/cmyk.jpg").getpixel((20, 15)), (255, 0, 0), tolerance=30)
    assert close(image("0001/gray.png").getpixel((5, 5)), (90, 90, 90), tolerance=3)
    assert close(image("0001/deep.png").getpixel((5, 5)), (156, 156, 156), tolerance=3)
    for name in ("0001/palette.gif", "0001/rgba.PNG", "0002/photo.webp"):
        colours = quadrant_colours_of(image(name))
        assert all(close(a, b) for a, b in zip(colours, QUADRANT_COLOURS, strict=True)), name
    stored = train.cast_column("image", datasets.Image(decode=False))
    for value in stored["image"]:
        assert Image.open(io.BytesIO(value["bytes"])).format == "JPEG"  # embedded, not paths


def test_card_yaml_defines_the_configs_with_one_label_set(messy, tmp_path):
    readme = (messy["out"] / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(readme.split("---")[1])
    configs = {c["config_name"]: c for c in header["configs"]}
    assert {n: [f["split"] for f in c["data_files"]] for n, c in configs.items()} == {
        "normal": ["train", "test"],
        "hard": ["test"],
        "group": ["test"],
    }
    assert configs["normal"].get("default") is True
    features = {name: _load(messy["out"], name, tmp_path)["test"].features for name in configs}
    assert features["normal"] == features["hard"] == features["group"]
    assert features["hard"]["label"].names == list(CLASS_NAMES)
    assert set(_load(messy["out"], None, tmp_path)) == {"train", "test"}  # default: normal


def test_prepare_to_dot_koin_then_load_dataset_koin(tmp_path, monkeypatch):
    raw = make_raw_koin(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "raw", "./koin"]) == 0
    hard = datasets.load_dataset("koin", "hard", cache_dir=str(tmp_path / "cache"))
    assert sorted(hard["test"]["image_id"]) == sorted(
        p for p in image_files(raw) if p.startswith("hard_cases/")
    )
    assert hard["test"].features["label"].names == list(CLASS_NAMES)


def test_summary_is_printed_with_skips_and_warnings(tmp_path, capsys):
    datasets.enable_progress_bars()  # whatever an earlier test in this process switched off
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1})
    (raw / "normal_cases" / "train" / "0001" / "bad.jpg").write_bytes(b"junk")
    (raw / "normal_cases" / "test" / "0002").mkdir(parents=True)
    assert main(["prepare", str(raw), str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "Generating train split" in captured.err  # the progress bar
    assert "normal  train        3 images" in captured.out
    assert "skipped 1 file(s):" in captured.out
    assert "normal_cases/train/0001/bad.jpg: not a readable image" in captured.out
    assert "warning: empty class folder: normal_cases/test/0002" in captured.out
    assert "warning: no usable image in this split: not written: normal_cases/test" in captured.out
    assert "note: no hard cases" in captured.out  # a missing case is said, not hidden
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "normal", REPORT_FILE,
    ]  # fmt: skip


def test_split_without_usable_images_is_reported_not_written(tmp_path):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1, "hard_cases/test": 1})
    for class_id in CLASS_IDS:  # every hard image broken
        (raw / "hard_cases" / "test" / class_id / "img_0.jpg").write_bytes(b"junk")
    report = prepare_koin(raw, tmp_path / "out", verbose=False)
    assert len(report["skipped"]) == 3
    assert {"path": "hard_cases/test", "reason": "no usable image in this split: not written"} in (
        report["warnings"]
    )
    assert any("'hard' not written" in note for note in report["notes"])
    assert datasets.get_dataset_config_names(str(tmp_path / "out")) == ["normal"]


def test_zip_with_dataset_wrapper_and_worker_processes(tmp_path):
    raw = make_raw_koin(tmp_path / "raw", wrapper="Dataset")
    bad = raw / "hard_cases" / "test" / "0001" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    archive = tmp_path / "KoIn.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "raw").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "raw").as_posix())
        zf.writestr("__MACOSX/Dataset/._classes.csv", b"\0")  # what macOS adds to zips
    report = prepare_koin(archive, tmp_path / "out", num_proc=2, verbose=False)
    assert report["skipped"] == [
        {"path": "hard_cases/test/0001/broken.jpg", "reason": report["skipped"][0]["reason"]}
    ]
    hard = _load(tmp_path / "out", "hard", tmp_path / "cache")["test"]
    assert sorted(hard["image_id"]) == sorted(
        p
        for p in image_files(raw)
        if p.startswith("hard_cases/") and p != bad.relative_to(raw).as_posix()
    )
    assert hard.features["label"].names == list(CLASS_NAMES)


def test_hard_train_split_is_exported_when_present(tmp_path):
    raw = make_raw_koin(
        tmp_path / "raw",
        per_split={"normal_cases/train": 1, "hard_cases/train": 1, "hard_cases/test": 1},
    )
    report = prepare_koin(raw, tmp_path / "out", verbose=False)
    assert set(report["configs"]) == {"normal", "hard"}
    assert set(_load(tmp_path / "out", "hard", tmp_path / "cache")) == {"train", "test"}


def test_image_size_caps_stored_images_and_zero_keeps_originals(tmp_path):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1}, names=False)
    big = raw / "normal_cases" / "train" / "0000" / "big.jpg"
    write_image(big, 0, size=(300, 200))
    prepare_koin(raw, tmp_path / "small", image_size=32, verbose=False)
    prepare_koin(raw, tmp_path / "full", image_size=0, verbose=False)
    small = _load(tmp_path / "small", "normal", tmp_path / "c")["train"]
    assert all(min(image.size) == 32 for image in small["image"])
    full = _load(tmp_path / "full", "normal", tmp_path / "c")["train"]
    full = full.cast_column("image", datasets.Image(decode=False))
    stored = dict(zip(full["image_id"], full["image"], strict=True))
    assert stored["normal_cases/train/0000/big.jpg"]["bytes"] == big.read_bytes()


def _cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_cli_errors_are_one_line_naming_the_path(tmp_path, capsys):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1, "hard_cases/test": 1})
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    line = _cli_error(["prepare", str(raw), str(occupied)], capsys)
    assert line.startswith("koin prepare: error: ") and str(occupied) in line
    assert (occupied / "keep.txt").read_text() == "mine"

    (tmp_path / "empty_raw").mkdir()
    line = _cli_error(["prepare", str(tmp_path / "empty_raw"), str(tmp_path / "o1")], capsys)
    assert f"no normal_cases folder found in {tmp_path / 'empty_raw'}" in line

    stray = raw / "hard_cases" / "test" / "0042"
    write_image(stray / "a.jpg", 0)
    line = _cli_error(["prepare", str(raw), str(tmp_path / "o2")], capsys)
    assert str(stray) in line and "normal_cases/train" in line

    line = _cli_error(["prepare", str(raw), str(tmp_path / "o3"), "--image-size", "-5"], capsys)
    assert "--image_size" in line
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".o", "o"))]
    assert leftovers == ["occupied"]  # no output or half-written staging folder left behind


def test_cli_error_from_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "koin_hf.cli", "prepare", str(tmp_path / "nope"), "out"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"koin prepare: error: raw KoIn path {tmp_path / 'nope'} does not exist"
    ]


# ---------------------------------------------------------------------------------------------
# Trust: memory bombs, shared folders, nested and concurrent runs, hostile classes.csv


def test_a_bomb_png_is_skipped_with_its_reason_in_flat_memory(tmp_path):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 2})
    bomb = raw / "normal_cases" / "train" / "0001" / "bomb.png"
    bomb.write_bytes(bomb_png(20_000, 20_000))  # ~390 KB declaring 400 megapixels
    out = tmp_path / "out"
    code, err, peak_mb = run_measured(
        [sys.executable, "-m", "koin_hf.cli", "prepare", str(raw), str(out)]
    )
    assert code == 0, err
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["skipped"] == [
        {
            "path": "normal_cases/train/0001/bomb.png",
            "reason": "image too large: 400,000,000 pixels (400.0 megapixels), over the budget "
            "of 64 megapixels (raise it with --max_megapixels or $KOIN_MAX_MEGAPIXELS)",
        }
    ]
    assert report["max_megapixels"] == 64
    assert report["configs"]["normal"]["train"]["images"] == 6  # every other photo kept
    assert peak_mb < 500, f"peak RSS {peak_mb:.0f} MB"


def test_max_megapixels_skips_larger_photos_and_counts_them(tmp_path, capsys):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1})
    write_image(raw / "normal_cases" / "train" / "0002" / "big.jpg", 2, size=(100, 100))
    assert main(["prepare", str(raw), str(tmp_path / "out"), "--max_megapixels", "0.005"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 file(s):" in printed
    assert "normal_cases/train/0002/big.jpg: image too large: 100x100 pixels (0.0 megapixels), over the budget of 0.005 megapixels" in printed  # fmt: skip
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["configs"]["normal"]["train"]["images"] == 3


@pytest.mark.parametrize(("umask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])  # fmt: skip
def test_the_prepared_folder_follows_the_umask(tmp_path, umask, dir_mode, file_mode):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1, "hard_cases/test": 1})
    previous = os.umask(umask)
    try:
        prepare_koin(raw, tmp_path / "shared" / "koin", verbose=False)
    finally:
        os.umask(previous)
    out = tmp_path / "shared" / "koin"
    modes = {
        p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in [out, *out.rglob("*")]
    }
    assert "normal/train-00000-of-00001.parquet" in modes and "README.md" in modes
    for name, mode in modes.items():
        expected = dir_mode if (out / name).is_dir() else file_mode
        assert mode == expected, f"{name}: {oct(mode)}, expected {oct(expected)}"
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["koin"]  # no lock left


def test_an_output_folder_inside_the_raw_folder_is_refused(tmp_path, capsys):
    raw = make_raw_koin(
        tmp_path / "raw", per_split={"normal_cases/train": 1, "normal_cases/test": 1}
    )
    before = image_files(raw)
    inside = raw / "normal_cases" / "test" / "out"
    line = _cli_error(["prepare", str(raw), str(inside)], capsys)
    assert line == (
        f"koin prepare: error: output folder {inside} is inside the raw KoIn folder {raw}; "
        "choose an output folder outside it"
    )
    assert image_files(raw) == before and not inside.exists()
    line = _cli_error(["prepare", str(raw), str(raw)], capsys)
    assert "is inside the raw KoIn folder" in line
    # The same folder reached through a symbolic link is still inside.
    (tmp_path / "link").symlink_to(raw)
    line = _cli_error(["prepare", str(raw), str(tmp_path / "link" / "out")], capsys)
    assert "is inside the raw KoIn folder" in line
    # And the raw tree inside the output folder.
    line = _cli_error(["prepare", str(raw), str(tmp_path)], capsys)
    assert line == (
        f"koin prepare: error: the raw KoIn path {raw} is inside the output folder {tmp_path}; "
        "choose an output folder that does not contain it"
    )
    assert main(["prepare", str(raw), str(tmp_path / "out")]) == 0  # the raw tree still prepares


def test_a_second_prepare_into_a_claimed_folder_is_refused_at_once(tmp_path, capsys):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1})
    out = tmp_path / "koin"
    with claim_folder(out, "koin prepare"):
        line = _cli_error(["prepare", str(raw), str(out)], capsys)
        assert line.startswith(
            f"koin prepare: error: {out} is being written by koin prepare (pid {os.getpid()} on "
        )
        assert line.endswith(f"delete the lock file {tmp_path / '.koin.lock'}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".koin.lock", "raw"]  # no work done
    assert main(["prepare", str(raw), str(out)]) == 0  # free again once the first run ends


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,name\n0000,Kim Minji\n0001,Lee\x00Jieun\n0002,Park\n",
            "line 3 contains a NUL byte; ids and names must be plain text",
        ),
        (
            'id,name\n0000,Kim Minji\n0001,"Lee Jieun\n0002,Park\n',
            "line 3: a quoted field runs from here to line 4; is a closing quote missing?",
        ),
        (
            "id,name\n0000,Kim\x1bMinji\n0001,Lee\n0002,Park\n",
            "line 2 contains the control character U+001B; ids and names must be plain text",
        ),
    ],
)
def test_classes_csv_with_a_nul_byte_or_an_unclosed_quote(tmp_path, capsys, text, message):
    raw = make_raw_koin(tmp_path / "raw", per_split={"normal_cases/train": 1}, names=False)
    (raw / "classes.csv").write_bytes(text.encode("utf-8"))
    line = _cli_error(["prepare", str(raw), str(tmp_path / "out")], capsys)
    assert line == f"koin prepare: error: {raw / 'classes.csv'} {message}"
    assert not (tmp_path / "out").exists()
