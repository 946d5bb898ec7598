"""`koin prepare`: a raw KoIn folder (or zip) becomes a script-free, Hub-ready dataset folder.

The KoIn builder (dataset_script/koin.py) does the reading and decoding; this module runs it for
each configuration and exports what it built as parquet shards plus a README.md whose YAML
`configs:` make `load_dataset(OUT_DIR, "hard")` work with datasets >= 4, locally or once pushed.
The export is written to a sibling folder and renamed into place at the end, so a failed or
interrupted run never leaves a half-written dataset behind; the output folder is claimed
(koin_hf.folder_lock) for the whole run, so a second `koin prepare` into it is refused at once.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets.exceptions import DatasetGenerationError
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from koin_hf.data.images import pixel_budget
from koin_hf.dataset_script.koin import (
    ALL_CONFIG_NAMES,
    DEFAULT_IMAGE_SIZE,
    OPEN_SET_CONFIG,
    UNKNOWN_LABEL_ID,
    Koin,
    RawLocation,
    case_split_dirs,
    check_layout,
    find_class_names_file,
    list_class_ids,
    locate_raw,
    printable,
    read_class_names,
)
from koin_hf.errors import KoinError
from koin_hf.folder_lock import claim_folder, staging_folder_beside
from koin_hf.hub.dataset_card import render_dataset_card
from koin_hf.hub.provenance import REPORT_KEY, read_synthetic_marker

logger = logging.getLogger(__name__)

REPORT_FILE = "prepare_report.json"
# A later stage (koin_hf.faces.prepare) adds configs made from the same raw folder: called with
# the raw location, the staging folder, the report so far and a private scratch folder, it
# writes parquet shards under staging/<config>/ and returns {config: DatasetInfo (features and
# splits)}; the card, the report's counts and load_dataset then see them like any other config.
ExtraConfigs = Callable[[RawLocation, Path, dict, Path], dict[str, datasets.DatasetInfo]]
MAX_SHARD_BYTES = 500 * 1024 * 1024  # the Hub viewer and git-LFS are happiest below ~500 MB


def _check_output_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise KoinError(f"output path {out_dir} exists and is not a folder; choose a new folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise KoinError(f"output folder {out_dir} is not empty; choose a new or empty folder")


def _check_not_nested(raw_dir: Path, out_dir: Path) -> None:
    """The output inside the raw tree would be read as raw data by the next prepare (and by
    this one's listing); the raw tree inside the output would be replaced by the dataset."""
    raw = raw_dir.resolve()
    out = out_dir.resolve()
    if out == raw or out.is_relative_to(raw):
        raise KoinError(
            f"output folder {out_dir} is inside the raw KoIn folder {raw_dir}; "
            "choose an output folder outside it"
        )
    if raw.is_relative_to(out):
        raise KoinError(
            f"the raw KoIn path {raw_dir} is inside the output folder {out_dir}; "
            "choose an output folder that does not contain it"
        )


def _check_options(image_size: int | None, num_proc: int | None) -> None:
    if image_size is not None and image_size < 0:
        raise KoinError(
            f"--image_size must be a number of pixels (0 keeps the originals), not {image_size}"
        )
    if num_proc is not None and num_proc < 1:
        raise KoinError(f"--num_proc must be at least 1, not {num_proc}")


def _relative(path: str | Path, root: Path) -> str:
    path = Path(path)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _read_log(log_dir: Path, kind: str, root: Path) -> list[dict[str, str]]:
    """Merge the per-process JSON-lines logs the builder wrote, with paths relative to the root."""
    records = []
    for log in sorted(log_dir.glob(f"{kind}-*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record["path"] = _relative(record["path"], root)
            records.append(record)
    unique = {(r["path"], r["reason"]): r for r in records}
    return sorted(unique.values(), key=lambda r: r["path"])


def _built_shards(builder: Koin, split: str) -> list[Path]:
    """The parquet shards the builder wrote for one split, in row order."""
    folder = Path(builder.cache_dir)
    single = folder / f"{builder.dataset_name}-{split}.parquet"
    if single.is_file():
        return [single]
    return sorted(folder.glob(f"{builder.dataset_name}-{split}-[0-9]*-of-[0-9]*.parquet"))


def _export_split(builder: Koin, folder: Path, split: str) -> list[str]:
    """Move one split's shards into the dataset folder, named the way push_to_hub names them."""
    shards = _built_shards(builder, split)
    names = []
    for index, shard in enumerate(shards):
        name = f"{split}-{index:05d}-of-{len(shards):05d}.parquet"
        shutil.move(shard, folder / name)
        names.append(name)
    return names


@contextlib.contextmanager
def _quiet_datasets_progress() -> Iterator[None]:
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _split_summary(folder: Path, names: list[str], class_names: list[str]) -> dict[str, Any]:
    """Image count and per-class counts of one exported split, from its label column alone."""
    counts: Counter[int] = Counter()
    for name in names:
        labels = pq.read_table(folder / name, columns=["label"]).column("label")
        counts.update(labels.to_pylist())
    summary = {
        "images": sum(counts.values()),
        "per_class": {class_names[i]: counts.get(i, 0) for i in range(len(class_names))},
    }
    if counts.get(UNKNOWN_LABEL_ID):  # the unknown config: people outside the classes
        summary["not_a_class"] = counts[UNKNOWN_LABEL_ID]
    return summary


def build_card_header(
    configs: dict[str, list[str]], infos: dict[str, datasets.DatasetInfo]
) -> DatasetCardData:
    """YAML header: `configs:` (what load_dataset reads) and `dataset_info` (features, sizes)."""
    card_data = DatasetCardData()
    metadata_configs = MetadataConfigs(
        {
            name: {
                "data_files": [{"split": split, "path": f"{name}/{split}-*"} for split in splits],
                **({"default": True} if name == "normal" else {}),
            }
            for name, splits in configs.items()
        }
    )
    metadata_configs.to_dataset_card_data(card_data)
    datasets.info.DatasetInfosDict(infos).to_dataset_card_data(card_data)
    card_data.license = "other"
    card_data.task_categories = ["image-classification"]
    card_data.pretty_name = "KoIn"
    return card_data


def prepare_koin(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    image_size: int | None = DEFAULT_IMAGE_SIZE,
    num_proc: int | None = None,
    verbose: bool = True,
    max_megapixels: float | None = None,
    extra_configs: ExtraConfigs | None = None,
) -> dict[str, Any]:
    """Convert a raw KoIn folder or zip into a prepared dataset folder; return the report.

    image_size: shorter side, in pixels, that stored images are reduced to (None or 0 keeps them).
    num_proc: processes that decode images (datasets' `num_proc`); None decodes in this one.
    verbose: progress bars while building and the summary at the end (False: silent).
    max_megapixels: images whose header declares more pixels are skipped, with the reason, before
    they are decoded (default $KOIN_MAX_MEGAPIXELS, else 64).
    extra_configs: more configs built from the raw folder (see ExtraConfigs; `koin prepare
    --faces` passes koin_hf.faces.prepare's face crops).
    Raises KoinError, naming the path at fault, for every layout or input problem it detects
    before writing anything, and when another run is writing the same output folder.
    """
    _check_options(image_size, num_proc)
    max_megapixels = pixel_budget(max_megapixels)
    image_size = image_size or None  # 0 means "keep the original size", like the CLI flag
    raw_path = Path(raw_dir).expanduser()
    out_dir = Path(out_dir).expanduser()
    if raw_path.exists():  # a missing raw path gets its own message from locate_raw
        _check_not_nested(raw_path, out_dir)
    _check_output_dir(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KoinError(f"cannot create output folder {out_dir} ({err.strerror or err})") from err
    with claim_folder(out_dir, "koin prepare"):
        _check_output_dir(out_dir)  # again, now that no other prepare can be writing it
        report = _prepare_claimed(
            raw_path, out_dir, image_size, num_proc, verbose, max_megapixels, extra_configs
        )
    if verbose:
        print(format_report(report, out_dir))
    return report


def _prepare_claimed(
    raw_dir: Path,
    out_dir: Path,
    image_size: int | None,
    num_proc: int | None,
    verbose: bool,
    max_megapixels: float,
    extra_configs: ExtraConfigs | None = None,
) -> dict[str, Any]:
    """The conversion itself, run while the output folder is claimed."""
    staging = staging_folder_beside(out_dir)
    # Scratch space (builder cache, logs, an extracted zip) stays private and is removed.
    work = Path(tempfile.mkdtemp(prefix="koin-prepare-"))
    try:
        location = locate_raw(raw_dir, work / "extracted")
        report = _preflight(location)
        with contextlib.nullcontext() if verbose else _quiet_datasets_progress():
            _build_all_configs(
                report, location, staging, work, image_size, num_proc, max_megapixels, extra_configs
            )
        # Only the name: the report is published with the dataset, a home path is nobody's business.
        report["source"] = printable(raw_dir.resolve().name)
        report_text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        (staging / REPORT_FILE).write_text(report_text, encoding="utf-8", errors="backslashreplace")
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return report


def _preflight(location: RawLocation) -> dict[str, Any]:
    """Check the whole layout (classes, names, every split) before spending time decoding."""
    root = location.root
    class_ids = list_class_ids(root)
    names_file = find_class_names_file(location)
    class_names = read_class_names(names_file, class_ids)  # a bad classes.csv fails now
    check_layout(root)  # raises on a hard/group class unknown to normal_cases/train
    return {
        "class_ids": class_ids,
        "class_names": class_names,
        "class_names_file": _relative(names_file, location.top) if names_file else None,
        REPORT_KEY: read_synthetic_marker(location.root, location.top),  # None: real KoIn
    }


def _build_all_configs(
    report: dict[str, Any],
    location: RawLocation,
    staging: Path,
    work: Path,
    image_size: int | None,
    num_proc: int | None,
    max_megapixels: float,
    extra_configs: ExtraConfigs | None = None,
) -> None:
    """Build, export and summarise every config present; fills `report` in place."""
    root = location.root
    log_dir = work / "logs"
    configs: dict[str, list[str]] = {}
    infos: dict[str, datasets.DatasetInfo] = {}
    report.update(
        configs={}, image_size=image_size, max_megapixels=max_megapixels, notes=[], empty_splits=[]
    )
    for name in ALL_CONFIG_NAMES:
        if not case_split_dirs(root, name):
            if name == OPEN_SET_CONFIG:  # optional: most KoIn folders have no unknown people
                continue
            report["notes"].append(f"no {name} cases folder: config {name!r} not written")
            continue
        builder = Koin(
            config_name=name,
            data_dir=str(location.top),
            image_size=image_size,
            max_megapixels=max_megapixels,
            skip_log_dir=str(log_dir),
            cache_dir=str(work / "cache"),
        )
        _run_builder(builder, num_proc)
        info, empty = _without_empty_splits(builder.info)
        for split in empty:
            folder = _relative(case_split_dirs(root, name)[split], root)
            report["empty_splits"].append(
                {"path": folder, "reason": "no usable image in this split: not written"}
            )
        if not info.splits:
            report["notes"].append(f"no usable {name} image: config {name!r} not written")
            continue
        (staging / name).mkdir()
        configs[name] = list(info.splits)
        report["configs"][name] = {}
        class_names = builder.info.features["label"].names
        for split in configs[name]:
            shard_names = _export_split(builder, staging / name, split)
            report["configs"][name][split] = _split_summary(
                staging / name, shard_names, class_names
            )
        infos[name] = info
    if extra_configs is not None:
        for name, info in extra_configs(location, staging, report, work).items():
            configs[name] = list(info.splits)
            infos[name] = info
            class_names = info.features["label"].names
            report["configs"][name] = {
                split: _split_summary(
                    staging / name,
                    sorted(p.name for p in (staging / name).glob(f"{split}-*.parquet")),
                    class_names,
                )
                for split in configs[name]
            }
    report["skipped"] = _read_log(log_dir, "skipped", root)
    report["warnings"] = (
        _read_log(log_dir, "warnings", root)
        + report.pop("empty_splits")
        + _classes_without_images(report)
    )
    report["total_images"] = sum(
        split["images"] for splits in report["configs"].values() for split in splits.values()
    )
    _write_card(staging, build_card_header(configs, infos), report)


def _without_empty_splits(info: datasets.DatasetInfo) -> tuple[datasets.DatasetInfo, list[str]]:
    """A copy of the builder's info listing only splits with rows, and the names of the others.

    A split whose every file was skipped has no rows; datasets cannot read it back, and a card
    that announced it would fail load_dataset's split verification.
    """
    kept = copy.deepcopy(info)
    empty = [name for name, split in info.splits.items() if not split.num_examples]
    kept.splits = datasets.SplitDict(
        {name: split for name, split in info.splits.items() if split.num_examples},
        dataset_name=info.splits.dataset_name,
    )
    return kept, empty


def _run_builder(builder: Koin, num_proc: int | None) -> None:
    try:
        # Parquet straight from the generator, a row group at a time: no Arrow cache to read
        # back and re-export, so memory stays flat whatever the dataset size (bench_memory.py).
        builder.download_and_prepare(
            num_proc=num_proc, file_format="parquet", max_shard_size=MAX_SHARD_BYTES
        )
    except DatasetGenerationError as err:
        # datasets wraps whatever the generator raised; a user-facing error stays one line.
        if isinstance(err.__cause__, KoinError):
            raise err.__cause__ from None
        raise


def _classes_without_images(report: dict[str, Any]) -> list[dict[str, str]]:
    """A class that ends up with no training image cannot be learned: say so by name."""
    train = report["configs"].get("normal", {}).get("train")
    if not train:
        return []
    return [
        {"path": f"normal_cases/train ({name})", "reason": "class has no usable training image"}
        for name, count in train["per_class"].items()
        if count == 0
    ]


def _write_card(staging: Path, card_data: DatasetCardData, report: dict[str, Any]) -> None:
    text = render_dataset_card(staging, card_data, report)
    (staging / "README.md").write_text(text, encoding="utf-8")


def format_report(report: dict[str, Any], out_dir: Path) -> str:
    """The human summary printed at the end of `koin prepare`."""
    lines = [f"Prepared KoIn dataset in {out_dir} ({len(report.get('class_names', []))} classes)"]
    for config, splits in report["configs"].items():
        for split, summary in splits.items():
            lines.append(f"  {config:<7} {split:<6} {summary['images']:>7} images")
    skipped = report.get("skipped", [])
    lines.append(f"  skipped {len(skipped)} file(s)" + (":" if skipped else ""))
    for record in skipped[:20]:
        lines.append(f"    {record['path']}: {record['reason']}")
    if len(skipped) > 20:
        lines.append(f"    ... {len(skipped) - 20} more in {REPORT_FILE}")
    for record in report.get("warnings", []):
        lines.append(f"  warning: {record['reason']}: {record['path']}")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    lines.append(f"Per-class counts and every skipped file: {out_dir / REPORT_FILE}")
    example = "hard" if "hard" in report["configs"] else next(iter(report["configs"]), "normal")
    lines.append(f"Load it with: datasets.load_dataset({str(out_dir)!r}, {example!r})")
    return "\n".join(lines)
