"""The model card: what a trained model folder records, as Hub metadata and a readable page.

Reading is forgiving: a model dir needs only `config.json`; missing training or metric files just
leave their sections with "not recorded" cells.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup

from koin_hf.errors import KoinError
from koin_hf.hub.cards import (
    BENCHMARK_SETS,
    KOIN_CITATION,
    KOIN_HOMEPAGE,
    KOIN_LICENSE_NAME,
    NOT_RECORDED,
    PAPER_ARXIV_ID,
    atomic_write_text,
    is_hub_id,
    names_hub_repo,
    read_json,
    render,
    yaml_front_matter,
)
from koin_hf.hub.provenance import (
    GENERATOR_LICENSE,
    GENERATOR_LICENSE_NAME,
    prepared_folder_is_synthetic,
)
from koin_hf.run_record import RunRecord

_METRIC_KEY = re.compile(r"^(?:eval_)?(?P<set>[A-Za-z0-9_]+?)_top(?P<k>\d+)_accuracy$")


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


def _recorded(value: object) -> object:
    return NOT_RECORDED if value is None else value


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


def _method_text(record: RunRecord) -> str:
    method = record.method
    if method == "lora":
        lora = record.lora
        parts = []
        if lora is not None:
            values = {"r": lora.r, "alpha": lora.alpha, "dropout": lora.dropout}
            parts = [f"{key}={value}" for key, value in values.items() if value is not None]
            if lora.target_modules:
                parts.append("targets " + ", ".join(map(str, lora.target_modules)))
        detail = f" ({'; '.join(parts)})" if parts else ""
        return f"LoRA, merged into the weights{detail}"
    return {
        "full": "full fine-tuning",
        "linear_probe": "linear probe (frozen backbone, trained head)",
    }.get(str(method), str(method) if method else NOT_RECORDED)


def _dataset_text(record: RunRecord) -> str:
    dataset = record.dataset
    config = record.dataset_config
    if not dataset:
        return NOT_RECORDED
    name = str(dataset) if names_hub_repo(dataset) else Path(str(dataset)).name
    return f"{name} ({config})" if config else name


def trained_on_synthetic(record: RunRecord) -> bool:
    """Generated training data: the record says so, or the local prepared folder it names does."""
    if record.is_synthetic:
        return True
    dataset = record.dataset
    return bool(dataset) and not names_hub_repo(dataset) and prepared_folder_is_synthetic(dataset)


def _model_index(
    name: str, metrics: dict[str, dict[int, float]], dataset_id: str, *, synthetic: bool
) -> list[dict]:
    dataset_name = "Synthetic KoIn" if synthetic else "KoIn"
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
                        "name": f"{dataset_name} ({eval_set})",
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
    record: RunRecord,
    metrics: dict[str, dict[int, float]],
    *,
    model_name: str,
    dataset_id: str | None,
) -> dict[str, Any]:
    """The YAML header as a dict: only Hub-valid values (a local base path is left out)."""
    base_model = record.base_model
    recorded = record.dataset
    hub_dataset = dataset_id or (recorded if names_hub_repo(recorded) else None)
    tags = ["image-classification", "vision", "face-recognition", "koin", "koin-hf"]
    if record.family:
        tags.append(str(record.family))
    if record.method == "lora":
        tags += ["peft", "lora"]
    if record.shots_per_class:
        tags.append("few-shot")
    synthetic = trained_on_synthetic(record)
    if synthetic:
        tags += ["synthetic", "synthetic-data"]
    metadata: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "image-classification",
    }
    if synthetic:  # generated by koin-hf: its licence, not KoIn's terms
        metadata["license"] = GENERATOR_LICENSE
    else:
        metadata.update(license="other", license_name=KOIN_LICENSE_NAME, license_link=KOIN_HOMEPAGE)
    if names_hub_repo(base_model):
        metadata["base_model"] = base_model
    if hub_dataset and "/" in str(hub_dataset):
        metadata["datasets"] = [hub_dataset]
    metadata["tags"] = list(dict.fromkeys(tags))
    model_index = _model_index(model_name, metrics, str(hub_dataset or "koin"), synthetic=synthetic)
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
    config = read_json(model_dir / "config.json", required=True)
    record = RunRecord.load_if_present(model_dir) or RunRecord()
    results = read_json(model_dir / "all_results.json")
    metrics = read_top_k_metrics(results)
    if repo_id is not None and not is_hub_id(repo_id):
        raise KoinError(f"--repo_id {repo_id!r} is not a valid Hub id (expected user/name)")
    model_name = (repo_id or model_dir.resolve().name).split("/")[-1]
    rows = [
        ("Model family", record.family or config.get("model_type") or NOT_RECORDED),
        ("Base checkpoint", record.base_model or NOT_RECORDED),
        ("Method", _method_text(record)),
        ("Training data", _dataset_text(record)),
        ("Shots per class", record.shots_per_class or "all training images"),
        ("Seed", _recorded(record.seed)),
        ("Epochs", _recorded(record.num_train_epochs)),
        ("Precision", record.precision or NOT_RECORDED),
    ]
    result_rows = [
        {
            "name": eval_set,
            "top1": _percent(metrics.get(eval_set, {}).get(1)),
            "top3": _percent(metrics.get(eval_set, {}).get(3)),
        }
        for eval_set in _ordered_sets(metrics)
    ]
    return render(
        "model_card.md.j2",
        front_matter=yaml_front_matter(
            model_card_metadata(
                config, record, metrics, model_name=model_name, dataset_id=dataset_id
            )
        ),
        title=model_name,
        usage_model=Markup(repo_id or "path/to/model_dir"),  # validated above: safe in code
        setup_rows=rows,
        result_rows=result_rows,
        has_results=bool(metrics),
        labels=_labels(config),
        method=record.method,
        lora_targets=record.lora.target_modules if record.lora else [],
        synthetic=trained_on_synthetic(record),
        generator_license=GENERATOR_LICENSE_NAME,
        paper_arxiv_id=PAPER_ARXIV_ID,
        koin_homepage=Markup(KOIN_HOMEPAGE),
        citation=Markup(KOIN_CITATION),
    )


def write_model_card(model_dir: str | Path, *, repo_id: str | None = None) -> Path:
    """Render the card and write it atomically as `README.md` in the model folder."""
    text = render_model_card(model_dir, repo_id=repo_id)
    return atomic_write_text(Path(model_dir).expanduser() / "README.md", text)
