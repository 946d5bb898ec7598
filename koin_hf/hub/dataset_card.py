"""The dataset card of a prepared KoIn folder: `configs:` YAML, sizes, skipped files, usage."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup

from koin_hf.errors import KoinError
from koin_hf.hub.cards import (
    KOIN_CITATION,
    KOIN_HOMEPAGE,
    KOIN_LICENSE_NAME,
    PAPER_ARXIV_ID,
    atomic_write_text,
    is_hub_id,
    read_json,
    render,
    yaml_front_matter,
)


def read_card_header(readme: Path) -> dict[str, Any]:
    """The YAML header of an existing README.md ({} when it has none)."""
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    match = re.match(r"^\s*---\r?\n(.*?)\r?\n---\s*(\r?\n|$)", text, flags=re.DOTALL)
    if not match:
        return {}
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise KoinError(f"the YAML header of {readme} does not parse ({err})") from None
    return header if isinstance(header, dict) else {}


def _size_category(total: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if total < limit:
            return label
    return "100K<n<1M" if total < 1_000_000 else "1M<n<10M"


def dataset_card_metadata(header: Mapping[str, Any], total_images: int) -> dict[str, Any]:
    """Our descriptive keys, then the caller's header (its `configs`/`dataset_info` win)."""
    metadata: dict[str, Any] = {
        "pretty_name": "KoIn",
        "license": "other",
        "license_name": KOIN_LICENSE_NAME,
        "license_link": KOIN_HOMEPAGE,
        "task_categories": ["image-classification"],
        "tags": ["face-recognition", "koin", "celebrities"],
        "size_categories": [_size_category(total_images)],
    }
    for key, value in header.items():
        if value is not None:
            metadata[key] = value
    return metadata


def render_dataset_card(
    data_dir: str | Path,
    configs_yaml: Mapping[str, Any] | Any | None = None,
    report: Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
) -> str:
    """The README.md text for a prepared dataset folder.

    configs_yaml: the YAML header to keep, as a dict (or a `huggingface_hub.DatasetCardData`):
    at least `configs:` (what `load_dataset(DIR, "hard")` reads) and optionally `dataset_info`.
    These keys are written as given; descriptive keys (licence, task, tags) are added around
    them. None reads the header of `data_dir/README.md`.
    report: the `prepare_report.json` dict; None reads `data_dir/prepare_report.json`.
    """
    data_dir = Path(data_dir).expanduser()
    if configs_yaml is None:
        header: Mapping[str, Any] = read_card_header(data_dir / "README.md")
    elif hasattr(configs_yaml, "to_dict"):
        header = configs_yaml.to_dict()
    else:
        header = dict(configs_yaml)
    if report is None:
        report = read_json(data_dir / "prepare_report.json")
    configs = report.get("configs") or {}
    class_names = [str(name) for name in report.get("class_names") or []]
    split_rows = []
    per_class: dict[str, dict[str, int]] = {name: {} for name in class_names}
    columns = []
    for config_name, splits in configs.items():
        for split, summary in (splits or {}).items():
            column = f"{config_name}/{split}"
            columns.append(column)
            counts = (summary or {}).get("per_class") or {}
            split_rows.append(
                {
                    "config": config_name,
                    "split": split,
                    "images": (summary or {}).get("images", sum(counts.values())),
                    "classes": sum(1 for n in counts.values() if n),
                }
            )
            for name, count in counts.items():
                per_class.setdefault(str(name), {})[column] = count
    total = sum(int(row["images"] or 0) for row in split_rows)
    skipped = report.get("skipped") or []
    reasons = Counter(
        str(item.get("reason", "unknown")) for item in skipped if isinstance(item, dict)
    )
    load_target = repo_id if repo_id and is_hub_id(repo_id) else "path/to/prepared_dir"
    config_names = [
        c.get("config_name") for c in header.get("configs") or [] if isinstance(c, dict)
    ]
    example_config = "hard" if "hard" in config_names or not config_names else config_names[0]
    return render(
        "dataset_card.md.j2",
        front_matter=yaml_front_matter(dataset_card_metadata(header, total)),
        split_rows=split_rows,
        columns=columns,
        class_rows=[
            {"name": name, "counts": [per_class[name].get(c, 0) for c in columns]}
            for name in per_class
        ],
        total_images=total,
        image_size=report.get("image_size"),
        skipped_count=len(skipped),
        skip_reasons=reasons.most_common(),
        load_snippet=Markup(f'load_dataset("{load_target}", "{_code_safe(example_config)}")'),
        paper_arxiv_id=PAPER_ARXIV_ID,
        koin_homepage=Markup(KOIN_HOMEPAGE),
        citation=Markup(KOIN_CITATION),
    )


def _code_safe(value: object) -> str:
    """A config name fit for a Python string literal in a code block (else a placeholder)."""
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z0-9_.-]+", text) else "CONFIG"


def write_dataset_card(
    data_dir: str | Path,
    configs_yaml: Mapping[str, Any] | Any | None = None,
    report: Mapping[str, Any] | None = None,
) -> Path:
    """Render the dataset card and write it atomically as `README.md` in `data_dir`."""
    text = render_dataset_card(data_dir, configs_yaml, report)
    return atomic_write_text(Path(data_dir).expanduser() / "README.md", text)
