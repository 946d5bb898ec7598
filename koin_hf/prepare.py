"""`koin prepare`: a raw KoIn folder (or zip) becomes a script-free, Hub-ready dataset folder.

The KoIn builder (dataset_script/koin.py) does the reading and decoding; this module runs it for
each configuration and exports what it built as parquet shards plus a README.md whose YAML
`configs:` make `load_dataset(OUT_DIR, "hard")` work with datasets >= 4, locally or once pushed.
The export is written to a sibling temp folder and renamed into place at the end, so a failed
or interrupted run never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData
from tqdm.auto import tqdm

from koin_hf.dataset_script.koin import DEFAULT_IMAGE_SIZE, Koin, case_split_dirs, find_raw_root
from koin_hf.errors import KoinError

CONFIG_NAMES = ("normal", "hard", "group")
REPORT_FILE = "prepare_report.json"
MAX_SHARD_BYTES = 500 * 1024 * 1024  # the Hub viewer and git-LFS are happiest below ~500 MB


def _check_output_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise KoinError(f"output folder {out_dir} is not empty; choose a new or empty folder")


def _read_log(log_dir: Path, kind: str, root: Path) -> list[dict[str, str]]:
    """Merge the per-process JSON-lines logs the builder wrote, with paths relative to the root."""
    records = []
    for log in sorted(log_dir.glob(f"{kind}-*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            path = Path(record["path"])
            if path.is_relative_to(root):
                record["path"] = path.relative_to(root).as_posix()
            records.append(record)
    unique = {(r["path"], r["reason"]): r for r in records}  # a split may be listed twice
    return sorted(unique.values(), key=lambda r: r["path"])


def _export_split(dataset: datasets.Dataset, folder: Path, split: str) -> list[str]:
    """Write one split as parquet shards named like push_to_hub names them."""
    num_shards = max(1, math.ceil(dataset.data.nbytes / MAX_SHARD_BYTES))
    names = []
    for index in range(num_shards):
        name = f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        dataset.shard(num_shards, index, contiguous=True).to_parquet(str(folder / name))
        names.append(name)
    return names


def _split_summary(dataset: datasets.Dataset) -> dict[str, Any]:
    names = dataset.features["label"].names
    counts = Counter(dataset["label"])
    return {
        "images": len(dataset),
        "per_class": {names[i]: counts.get(i, 0) for i in range(len(names))},
    }


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
) -> dict[str, Any]:
    """Convert a raw KoIn folder or zip into a prepared dataset folder; return the report."""
    out_dir = Path(out_dir).expanduser()
    _check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    work = Path(tempfile.mkdtemp(prefix="koin-prepare-"))
    try:
        root = find_raw_root(raw_dir, work / "extracted")
        report = _build_all_configs(root, staging, work, image_size, num_proc, verbose)
        report["source"] = str(Path(raw_dir).expanduser().resolve())
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if verbose:
        print(format_report(report, out_dir))
    return report


def _build_all_configs(
    root: Path,
    staging: Path,
    work: Path,
    image_size: int | None,
    num_proc: int | None,
    verbose: bool,
) -> dict[str, Any]:
    log_dir = work / "logs"
    configs: dict[str, list[str]] = {}
    infos: dict[str, datasets.DatasetInfo] = {}
    report: dict[str, Any] = {"configs": {}, "image_size": image_size}
    for name in CONFIG_NAMES:
        if not case_split_dirs(root, name):
            report.setdefault("notes", []).append(f"no {name} cases in {root}: config skipped")
            continue
        builder = Koin(
            config_name=name,
            data_dir=str(root),
            image_size=image_size,
            skip_log_dir=str(log_dir),
            cache_dir=str(work / "cache"),
        )
        builder.download_and_prepare(num_proc=num_proc)
        dataset_dict = builder.as_dataset()
        (staging / name).mkdir()
        configs[name] = list(dataset_dict)
        report["configs"][name] = {}
        for split, dataset in tqdm(
            dataset_dict.items(), desc=f"Exporting {name}", disable=not verbose
        ):
            _export_split(dataset, staging / name, split)
            report["configs"][name][split] = _split_summary(dataset)
        infos[name] = builder.info
        report["class_names"] = builder.info.features["label"].names
    report["skipped"] = _read_log(log_dir, "skipped", root)
    report["warnings"] = _read_log(log_dir, "warnings", root)
    report["total_images"] = sum(
        split["images"] for splits in report["configs"].values() for split in splits.values()
    )
    _write_card(staging, configs, infos, report)
    return report


def _write_card(staging: Path, configs, infos, report: dict[str, Any]) -> None:
    from koin_hf.hub import render_dataset_card  # cards live with the Hub code

    card_data = build_card_header(configs, infos)
    (staging / "README.md").write_text(render_dataset_card(card_data, report), encoding="utf-8")


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
    lines.append(f"Load it with: datasets.load_dataset({str(out_dir)!r}, 'hard')")
    return "\n".join(lines)
