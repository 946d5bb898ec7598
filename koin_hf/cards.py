"""Model and dataset cards: Jinja templates filled with the values a run actually produced.

Two rules keep hostile values (a celebrity name with `|`, a newline, `---` or `<script>`, a base
model path with quotes) from breaking a card:

* the YAML metadata block is built as a dict and written with `yaml.safe_dump`, never by string
  templating, and strings that span lines are forced into one-line double-quoted scalars, so no
  value can close the `---` block early;
* every value interpolated into the Markdown body is escaped by the Jinja environment's
  `finalize` hook (table pipes, backticks, emphasis, links, HTML, newlines). Only text this module
  builds itself is marked safe (`markupsafe.Markup`), e.g. the YAML block and the repo id inside the
  usage snippet, which is validated as a Hub id first.

Reading is forgiving: a model dir needs only `config.json`; missing training or metric files just
leave their sections with "not recorded" cells.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup

from koin_hf.errors import KoinError

PAPER_ARXIV_ID = "2310.09756"
PAPER_TITLE = "New Benchmarks for Asian Facial Recognition Tasks: Face Classification with Large Foundation Models"
KOIN_HOMEPAGE = "https://github.com/dukong1/KoIn_Benchmark_Dataset"
KOIN_LICENSE_NAME = "koin-academic-use"
KOIN_CITATION = f"""@misc{{koin2023,
  title         = {{{PAPER_TITLE}}},
  year          = {{2023}},
  eprint        = {{{PAPER_ARXIV_ID}}},
  archivePrefix = {{arXiv}},
  url           = {{https://arxiv.org/abs/{PAPER_ARXIV_ID}}}
}}"""

# Test sets of the benchmark, in the order the paper reports them; other eval sets follow.
BENCHMARK_SETS = ("normal", "hard", "group")
NOT_RECORDED = "not recorded"
_METRIC_KEY = re.compile(r"^(?:eval_)?(?P<set>[A-Za-z0-9_]+?)_top(?P<k>\d+)_accuracy$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


# --- escaping -----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def escape_markdown(value: object) -> str:
    """One-line Markdown text that renders as the literal value, also inside a table cell.

    HTML is entity-escaped (so `<script>` shows as text), Markdown syntax characters are
    backslash-escaped (`|` would split a table cell, backticks open code, `[..](..)` makes links)
    and line breaks become spaces (a newline would end a table row or start a new block).
    """
    text = str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return re.sub(r"[\r\n\t\f\v\u2028\u2029\x85]+", " ", text).strip()


def _finalize(value: object) -> object:
    """Jinja hook: escape every interpolated value unless this module marked it safe."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return escape_markdown(value)


def is_hub_id(value: object) -> bool:
    """True for 'name' or 'namespace/name' spelled the way the Hub accepts."""
    if not isinstance(value, str) or not _HUB_ID.fullmatch(value):
        return False
    return not ("--" in value or ".." in value or value.endswith(".git"))


def _names_hub_repo(value: object) -> bool:
    """A Hub id that is not also a local folder (training records either)."""
    return is_hub_id(value) and not Path(str(value)).expanduser().exists()


class _CardDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as one double-quoted line (escapes `\\n`)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(ch in value for ch in "\r\n\x85\u2028\u2029") or not value.isprintable():
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_CardDumper.add_representer(str, _represent_str)


def yaml_front_matter(metadata: Mapping[str, Any]) -> Markup:
    """The `---`-fenced YAML block, dumped (never templated) so values cannot escape it."""
    body = yaml.dump(
        dict(metadata),
        Dumper=_CardDumper,
        allow_unicode=True,
        sort_keys=False,
        width=10_000,
        default_flow_style=False,
    )
    return Markup(f"---\n{body}---\n")


# --- templates ----------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        autoescape=False,  # Markdown, not HTML: `finalize` does the escaping
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def _load_template(name: str) -> str:
    return resources.files("koin_hf.model_cards").joinpath(name).read_text(encoding="utf-8")


def _render(template: str, **context: Any) -> str:
    text = _environment().get_template(template).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def _atomic_write_text(path: Path, text: str) -> Path:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a card."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- model card ---------------------------------------------------------------------------------


def _read_json(path: Path, *, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise KoinError(f"{path} is missing: is {path.parent} a trained model folder?")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KoinError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise KoinError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data


def _fraction(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        return None
    return float(value)


def read_top_k_metrics(results: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """`{eval_set: {k: accuracy}}` from keys like `eval_hard_top3_accuracy` (fractions 0..1)."""
    metrics: dict[str, dict[int, float]] = {}
    for key, value in results.items():
        match = _METRIC_KEY.match(str(key))
        fraction = _fraction(value)
        if match and fraction is not None:
            metrics.setdefault(match["set"], {})[int(match["k"])] = fraction
    return metrics


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _ordered_sets(metrics: Mapping[str, Any]) -> list[str]:
    others = sorted(name for name in metrics if name not in BENCHMARK_SETS)
    # validation is a slice of the training data, so it goes last, after the test sets
    others.sort(key=lambda name: name == "validation")
    return [*BENCHMARK_SETS, *others]


def _labels(config: Mapping[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    if not id2label and isinstance(config.get("label_names"), list):
        # timm-wrapped models (TimmWrapperConfig) keep their label names in `label_names`.
        return [str(name) for name in config["label_names"]]
    try:
        pairs = sorted((int(key), str(name)) for key, name in id2label.items())
    except (AttributeError, TypeError, ValueError):
        return []
    return [name for _, name in pairs]


def _method_text(training: Mapping[str, Any]) -> str:
    method = training.get("method")
    if method == "lora":
        lora = training.get("lora") or {}
        parts = [f"{key}={lora[key]}" for key in ("r", "alpha", "dropout") if key in lora]
        if lora.get("target_modules"):
            parts.append("targets " + ", ".join(map(str, lora["target_modules"])))
        detail = f" ({'; '.join(parts)})" if parts else ""
        return f"LoRA, merged into the weights{detail}"
    return {
        "full": "full fine-tuning",
        "linear_probe": "linear probe (frozen backbone, trained head)",
    }.get(str(method), str(method) if method else NOT_RECORDED)


def _dataset_text(training: Mapping[str, Any]) -> str:
    dataset = training.get("dataset")
    config = training.get("dataset_config")
    if not dataset:
        return NOT_RECORDED
    name = str(dataset) if _names_hub_repo(dataset) else Path(str(dataset)).name
    return f"{name} ({config})" if config else name


def _is_synthetic(training: Mapping[str, Any]) -> bool:
    return "synth" in str(training.get("dataset", "")).lower()


def _model_index(name: str, metrics: dict[str, dict[int, float]], dataset_id: str) -> list[dict]:
    results = []
    for eval_set in BENCHMARK_SETS:
        scores = metrics.get(eval_set, {})
        entries = []
        if 1 in scores:
            entries.append(
                {"type": "accuracy", "value": round(scores[1], 4), "name": "Top-1 accuracy"}
            )
        if 3 in scores:
            entries.append(
                {
                    "type": "top_k_accuracy",
                    "value": round(scores[3], 4),
                    "name": "Top-3 accuracy",
                    "args": {"k": 3},
                }
            )
        if entries:
            results.append(
                {
                    "task": {"type": "image-classification", "name": "Image Classification"},
                    "dataset": {
                        "name": f"KoIn ({eval_set})",
                        "type": dataset_id,
                        "config": eval_set,
                        "split": "test",
                    },
                    "metrics": entries,
                }
            )
    return [{"name": name, "results": results}] if results else []


def model_card_metadata(
    config: Mapping[str, Any],
    training: Mapping[str, Any],
    metrics: dict[str, dict[int, float]],
    *,
    model_name: str,
    dataset_id: str | None,
) -> dict[str, Any]:
    """The YAML header as a dict: only Hub-valid values (a local base path is left out)."""
    base_model = training.get("base_model")
    recorded = training.get("dataset")
    hub_dataset = dataset_id or (recorded if _names_hub_repo(recorded) else None)
    tags = ["image-classification", "vision", "face-recognition", "koin", "koin-hf"]
    if training.get("family"):
        tags.append(str(training["family"]))
    if training.get("method") == "lora":
        tags += ["peft", "lora"]
    if training.get("shots_per_class"):
        tags.append("few-shot")
    if _is_synthetic(training):
        tags.append("synthetic-data")
    metadata: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
        "license": "other",
        "license_name": KOIN_LICENSE_NAME,
        "license_link": KOIN_HOMEPAGE,
    }
    if _names_hub_repo(base_model):
        metadata["base_model"] = base_model
    if hub_dataset and "/" in str(hub_dataset):
        metadata["datasets"] = [hub_dataset]
    metadata["tags"] = list(dict.fromkeys(tags))
    model_index = _model_index(model_name, metrics, str(hub_dataset or "koin"))
    if model_index:
        metadata["model-index"] = model_index
    return metadata


def render_model_card(
    model_dir: str | Path, *, repo_id: str | None = None, dataset_id: str | None = None
) -> str:
    """The README.md text for a trained model folder (see docs/HUB.md for what it reads).

    repo_id: the Hub id the model is (or will be) published under, used in the usage snippet and
    as the model-index name. dataset_id: the Hub dataset it was trained on, when
    `koin_training.json` names a local folder instead.
    """
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise KoinError(f"model folder {model_dir} does not exist")
    config = _read_json(model_dir / "config.json", required=True)
    training = _read_json(model_dir / "koin_training.json")
    results = _read_json(model_dir / "all_results.json")
    metrics = read_top_k_metrics(results)
    if repo_id is not None and not is_hub_id(repo_id):
        raise KoinError(f"--repo-id {repo_id!r} is not a valid Hub id (expected user/name)")
    model_name = (repo_id or model_dir.resolve().name).split("/")[-1]
    lora = training.get("lora") or {}
    rows = [
        ("Model family", training.get("family") or config.get("model_type") or NOT_RECORDED),
        ("Base checkpoint", training.get("base_model") or NOT_RECORDED),
        ("Method", _method_text(training)),
        ("Training data", _dataset_text(training)),
        ("Shots per class", training.get("shots_per_class") or "all training images"),
        ("Seed", training.get("seed", NOT_RECORDED)),
        ("Epochs", training.get("num_train_epochs", NOT_RECORDED)),
        ("Precision", training.get("precision") or NOT_RECORDED),
    ]
    result_rows = [
        {
            "name": eval_set,
            "top1": _percent(metrics.get(eval_set, {}).get(1)),
            "top3": _percent(metrics.get(eval_set, {}).get(3)),
        }
        for eval_set in _ordered_sets(metrics)
    ]
    return _render(
        "model_card.md.j2",
        front_matter=yaml_front_matter(
            model_card_metadata(
                config, training, metrics, model_name=model_name, dataset_id=dataset_id
            )
        ),
        title=model_name,
        usage_model=Markup(repo_id or "path/to/model_dir"),  # validated above: safe in code
        setup_rows=rows,
        result_rows=result_rows,
        has_results=bool(metrics),
        labels=_labels(config),
        method=training.get("method"),
        lora_targets=lora.get("target_modules") or [],
        synthetic=_is_synthetic(training),
        paper_arxiv_id=PAPER_ARXIV_ID,
        koin_homepage=Markup(KOIN_HOMEPAGE),
        citation=Markup(KOIN_CITATION),
    )


def write_model_card(model_dir: str | Path, *, repo_id: str | None = None) -> Path:
    """Render the card and write it atomically as `README.md` in the model folder."""
    text = render_model_card(model_dir, repo_id=repo_id)
    return _atomic_write_text(Path(model_dir).expanduser() / "README.md", text)


# --- dataset card -------------------------------------------------------------------------------


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
        report = _read_json(data_dir / "prepare_report.json")
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
    return _render(
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
    return _atomic_write_text(Path(data_dir).expanduser() / "README.md", text)
