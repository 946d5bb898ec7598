"""Model and dataset cards: real values in, hostile names cannot break the YAML or the tables."""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard
from records import LORA_VIT_RUN

from koin_hf.data.prepare import prepare_koin
from koin_hf.errors import KoinError
from koin_hf.hub.cards import atomic_write_text, escape_markdown
from koin_hf.hub.dataset_card import render_dataset_card
from koin_hf.hub.model_card import render_model_card, write_model_card
from koin_hf.hub.provenance import GENERATOR_LICENSE, GENERATOR_LICENSE_NAME
from koin_hf.run_record import SYNTHETIC_DATASET, RunRecord
from koin_hf.synthetic.writer import generate_synthetic_koin

HOSTILE_NAMES = [
    'Kim "Ji-soo"',
    "Lee: Min-ho",
    "two\nlines",
    "pipe | inside",
    "---",
    "<script>alert('x')</script>",
    "back`tick` and *stars* [link](http://x)",
    "한글 이름",
]

TRAINING = LORA_VIT_RUN
RESULTS = {
    "eval_normal_top1_accuracy": 0.625,
    "eval_normal_top3_accuracy": 0.875,
    "eval_hard_top1_accuracy": 0.25,
    "eval_hard_top3_accuracy": 0.5,
    "eval_group_top1_accuracy": 0.125,
    "eval_validation_top1_accuracy": 0.75,
    "eval_loss": 1.5,
}


def write_model_dir(
    path: Path, names: list[str], training: RunRecord | None, results: dict | None
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "vit", "id2label": {str(i): n for i, n in enumerate(names)}}
    (path / "config.json").write_text(json.dumps(config))
    if training is not None:
        training.save(path)
    if results is not None:
        (path / "all_results.json").write_text(json.dumps(results))
    return path


def table_rows(card: str, header: str) -> list[list[str]]:
    """Cells of the Markdown table whose header row starts with `header`, split on unescaped |."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())
        assert cells[0] == "" and cells[-1] == "", line
        rows.append([cell.strip() for cell in cells[1:-1]])
    return rows


def unescape(cell: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", cell))


def test_model_card_survives_hostile_names_and_round_trips(tmp_path: Path) -> None:
    hostile_family = "vit\n---\nlicense: mit"
    training = replace(TRAINING, family=hostile_family, base_model="/home/me/my model: 'v2'")
    model_dir = write_model_dir(tmp_path / "model", HOSTILE_NAMES, training, RESULTS)

    card_path = write_model_card(model_dir, repo_id="koin-tester/koin-vit")
    text = card_path.read_text(encoding="utf-8")
    assert card_path == model_dir / "README.md"
    assert [
        p.name for p in model_dir.iterdir() if p.name.startswith(".")
    ] == []  # no temp file left

    card = ModelCard.load(card_path)  # the Hub's own parser
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-classification"
    assert data["license"] == "other"
    assert hostile_family in data["tags"]  # a hostile value stays one YAML string
    assert {"peft", "lora", "few-shot"} <= set(data["tags"])
    assert "base_model" not in data  # a local path is not a Hub id: kept out of the metadata
    results = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {
        ("normal", "accuracy"): 0.625,
        ("normal", "top_k_accuracy"): 0.875,
        ("hard", "accuracy"): 0.25,
        ("hard", "top_k_accuracy"): 0.5,
        ("group", "accuracy"): 0.125,
    }
    assert "<script>" not in text and "license: mit\n" not in text.split("\n---\n", 1)[0]

    classes = table_rows(text, "Index")
    assert [len(row) for row in classes] == [2] * len(HOSTILE_NAMES)
    assert [unescape(row[1]) for row in classes] == [" ".join(n.split()) for n in HOSTILE_NAMES]

    results_rows = table_rows(text, "Eval set")
    assert results_rows == [
        ["normal", "62.5%", "87.5%"],
        ["hard", "25.0%", "50.0%"],
        ["group", "12.5%", "–"],
        ["validation", "75.0%", "–"],
    ]
    setup = dict(table_rows(text, "Setting"))
    assert unescape(setup["Base checkpoint"]) == "/home/me/my model: 'v2'"
    assert unescape(setup["Model family"]) == "vit --- license: mit"
    assert (
        setup["Shots per class"] == "5" and setup["Seed"] == "42" and setup["Precision"] == "bf16"
    )
    assert "r=16" in setup["Method"] and "query, value" in setup["Method"]
    assert 'pipeline("image-classification", model="koin-tester/koin-vit")' in text
    assert "Risks" in text and "Consent" in text and "academic research" in text


def test_model_card_degrades_when_training_files_are_missing(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "bare", ["a", "b"], training=None, results=None)
    text = render_model_card(model_dir)
    card = ModelCard(text)
    assert "model-index" not in card.data.to_dict()
    assert "peft" not in card.data.to_dict()["tags"]
    assert "not recorded" in text and "No evaluation results were recorded" in text
    assert table_rows(text, "Eval set") == [
        ["normal", "–", "–"],
        ["hard", "–", "–"],
        ["group", "–", "–"],
    ]
    assert 'model="path/to/model_dir"' in text


def test_model_card_full_finetune_and_synthetic_data(tmp_path: Path) -> None:
    training = replace(TRAINING, method="full", lora=None, dataset=SYNTHETIC_DATASET)
    text = render_model_card(
        write_model_dir(tmp_path / "m", ["a"], training, {"eval_hard_top1_accuracy": 2.0})
    )
    data = ModelCard(text).data.to_dict()
    assert "lora" not in data["tags"] and "synthetic-data" in data["tags"]
    assert data["base_model"] == "google/vit-base-patch16-224-in21k"
    assert "Trained on synthetic stand-in data" in text
    assert table_rows(text, "Eval set")[1] == ["hard", "–", "–"]  # 2.0 is no fraction: ignored


def test_model_card_errors_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(KoinError, match="config.json"):
        render_model_card(tmp_path)
    model_dir = write_model_dir(tmp_path / "m", ["a"], TRAINING, None)
    (model_dir / "all_results.json").write_text("{not json")
    with pytest.raises(KoinError, match="all_results.json is not valid JSON"):
        render_model_card(model_dir)
    with pytest.raises(KoinError, match="not a valid Hub id"):
        render_model_card(write_model_dir(tmp_path / "n", ["a"], None, None), repo_id="a b/c")


def test_escape_markdown_neutralises_markup() -> None:
    assert escape_markdown("a|b") == "a\\|b"
    assert escape_markdown("<img src=x onerror=y>") == "&lt;img src=x onerror=y&gt;"
    assert escape_markdown("x\r\ny") == "x y"
    assert escape_markdown("`code`") == "\\`code\\`"


CONFIGS_YAML = {
    "configs": [
        {
            "config_name": "normal",
            "data_files": [
                {"split": "train", "path": "normal/train-*"},
                {"split": "test", "path": "normal/test-*"},
            ],
            "default": True,
        },
        {"config_name": "hard", "data_files": [{"split": "test", "path": "hard/test-*"}]},
    ],
    "dataset_info": [
        {
            "config_name": "hard",
            "features": [
                {"name": "image", "dtype": "image"},
                {
                    "name": "label",
                    "dtype": {
                        "class_label": {"names": {"0": HOSTILE_NAMES[0], "1": HOSTILE_NAMES[2]}}
                    },
                },
            ],
            "splits": [{"name": "test", "num_examples": 3}],
        }
    ],
}


def _report(names: list[str]) -> dict:
    per_class = {name: i % 3 for i, name in enumerate(names)}
    return {
        "configs": {
            "normal": {
                "train": {"images": sum(per_class.values()), "per_class": per_class},
                "test": {"images": len(names), "per_class": dict.fromkeys(names, 1)},
            },
            "hard": {"test": {"images": 2, "per_class": {names[0]: 2}}},
        },
        "class_names": names,
        "skipped": [
            {"path": "x.txt", "reason": "not an image | <b>"},
            {"path": "y.jpg", "reason": "truncated"},
        ],
        "image_size": 256,
        "source": "/home/someone/KoIn",
    }


def test_dataset_card_keeps_configs_and_escapes_names(tmp_path: Path) -> None:
    text = render_dataset_card(
        tmp_path, CONFIGS_YAML, _report(HOSTILE_NAMES), repo_id="koin-tester/koin"
    )
    card = DatasetCard(text)
    header = yaml.safe_load(text.split("---\n", 2)[1])
    assert header["configs"] == CONFIGS_YAML["configs"]  # load_dataset reads these: kept verbatim
    assert header["dataset_info"] == CONFIGS_YAML["dataset_info"]
    assert card.data.to_dict()["license"] == "other"
    assert card.data.to_dict()["task_categories"] == ["image-classification"]
    assert "/home/someone" not in text
    assert "2310.09756" in text and "academic research only" in text
    assert 'load_dataset("koin-tester/koin", "hard")' in text

    splits = table_rows(text, "Config")
    assert splits == [
        ["normal", "train", "7", "5"],
        ["normal", "test", "8", "8"],
        ["hard", "test", "2", "1"],
    ]
    classes = table_rows(text, "Class")
    assert [len(row) for row in classes] == [4] * len(HOSTILE_NAMES)
    assert [unescape(row[0]) for row in classes] == [" ".join(n.split()) for n in HOSTILE_NAMES]
    assert table_rows(text, "Reason") == [["not an image \\| &lt;b&gt;", "1"], ["truncated", "1"]]


def test_dataset_card_reads_report_and_header_from_the_folder(tmp_path: Path) -> None:
    (tmp_path / "prepare_report.json").write_text(json.dumps(_report(["a", "b"])))
    first = render_dataset_card(tmp_path, DatasetCardData(**CONFIGS_YAML), None)
    (tmp_path / "README.md").write_text(first)
    again = render_dataset_card(tmp_path)  # header from README.md, counts from the report
    assert again == first
    loaded = DatasetCard.load(tmp_path / "README.md")
    assert loaded.data.to_dict()["configs"] == CONFIGS_YAML["configs"]


def test_model_card_counts_the_labels_of_a_timm_wrapped_model(tmp_path: Path) -> None:
    """TimmWrapperConfig keeps names in `label_names`, not `id2label` (the default lite0 model)."""
    model_dir = tmp_path / "lite0"
    model_dir.mkdir()
    config = {"model_type": "timm_wrapper", "label_names": ["Kim A", "Lee B", "Park C"]}
    (model_dir / "config.json").write_text(json.dumps(config))
    text = render_model_card(model_dir)
    assert "which of 3 people" in text and "Park C" in text


# --- cards say what the data is -----------------------------------------------------------------

# What may be said of the real KoIn photos only.
REAL_PEOPLE_CLAIMS = [
    "Every image shows a real, identifiable person",
    "photos collected from social networks",
    "collected from social networks",
    "This model identifies real, living people",
    "Korean celebrity photos",
    "academic research only",
    "koin-academic-use",
]


def front_matter(text: str) -> dict:
    return yaml.safe_load(text.split("---\n", 2)[1])


def first_paragraph_after_title(text: str) -> str:
    body = text.split("---\n", 2)[2].strip()
    title, rest = body.split("\n\n", 1)
    assert title.startswith("# ")
    return rest.split("\n\n", 1)[0]


def test_generator_licence_is_the_project_licence() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == GENERATOR_LICENSE_NAME
    assert GENERATOR_LICENSE_NAME.lower() == GENERATOR_LICENSE


def test_dataset_card_of_koin_synth_data_says_synthetic(tmp_path: Path) -> None:
    """koin synth -> koin prepare: the marker travels into the report and the card."""
    raw = generate_synthetic_koin(tmp_path / "raw", num_classes=2, progress=False,
                                  train_per_class=2, test_per_class=1, hard_per_class=1,
                                  group_per_class=0)  # fmt: skip
    report = prepare_koin(raw, tmp_path / "prepared", verbose=False)
    assert report["synthetic"]["generator"] == "koin-hf synth" and report["synthetic"]["seed"] == 0
    text = (tmp_path / "prepared" / "README.md").read_text()

    header = front_matter(text)
    assert header["license"] == "apache-2.0"
    assert "license_name" not in header and "license_link" not in header
    assert {"synthetic", "synthetic-data"} <= set(header["tags"])
    assert "celebrities" not in header["tags"]
    assert header["pretty_name"].startswith("Synthetic KoIn")
    assert sorted(c["config_name"] for c in header["configs"]) == ["hard", "normal"]  # loadable
    assert first_paragraph_after_title(text).startswith("> **Synthetic data.** Every image here")
    assert "Licence: Apache-2.0 (koin-hf's own), not KoIn's terms." in text
    assert [claim for claim in REAL_PEOPLE_CLAIMS if claim in text] == []
    assert DatasetCard.load(tmp_path / "prepared" / "README.md").data.license == "apache-2.0"
    assert render_dataset_card(tmp_path / "prepared") == text  # re-rendered in place: the same


def test_dataset_card_of_real_koin_keeps_the_ethics_and_the_authors_terms(tmp_path: Path) -> None:
    report = {**_report(["a", "b"]), "synthetic": None}  # what prepare writes for real data
    text = render_dataset_card(tmp_path, CONFIGS_YAML, report)
    header = front_matter(text)
    assert (header["license"], header["license_name"]) == ("other", "koin-academic-use")
    assert "synthetic" not in header["tags"] and "Synthetic" not in text
    assert "## Personal data\n\nEvery image shows a real, identifiable person." in text
    assert (
        "## Licence and terms\n\nKoIn is released by its authors for **academic research only**"
        in text
    )


def test_model_card_of_a_synthetic_run_says_synthetic_and_claims_no_real_people(
    tmp_path: Path,
) -> None:
    prepared = tmp_path / "synthetic-prepared"  # a local folder whose report says synthetic
    prepared.mkdir()
    (prepared / "prepare_report.json").write_text(json.dumps({"synthetic": {"seed": 3}}))
    for dataset in (SYNTHETIC_DATASET, str(prepared)):
        training = replace(TRAINING, dataset=dataset)
        text = render_model_card(write_model_dir(tmp_path / "m", ["a", "b"], training, RESULTS))
        header = front_matter(text)
        assert header["license"] == "apache-2.0" and "license_name" not in header, dataset
        assert {"synthetic", "synthetic-data"} <= set(header["tags"])
        assert (
            header["model-index"][0]["results"][0]["dataset"]["name"] == "Synthetic KoIn (normal)"
        )
        banner = first_paragraph_after_title(text)
        assert banner.startswith("> **Trained on synthetic stand-in data.**")
        assert "koin-hf's licence (Apache-2.0), not KoIn's terms" in banner.replace("\n> ", " ")
        assert "## Risks and licence" in text and "No real person's face or name" in text
        assert [claim for claim in REAL_PEOPLE_CLAIMS if claim in text] == [], dataset


def test_model_card_of_a_real_run_keeps_the_ethics_and_the_authors_terms(tmp_path: Path) -> None:
    text = render_model_card(write_model_dir(tmp_path / "m", ["a", "b"], TRAINING, RESULTS))
    header = front_matter(text)
    assert (header["license"], header["license_name"]) == ("other", "koin-academic-use")
    assert "synthetic" not in header["tags"] and "synthetic" not in text.lower()
    assert (
        "## Risks: recognising real people's faces\n\nThis model identifies real, living people"
        in text
    )
    assert "The KoIn dataset is released by its authors for academic research\n  only" in text
    assert first_paragraph_after_title(text).startswith(
        "An image classifier that names which of 2 people"
    )


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_cards_are_written_with_the_users_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        card = atomic_write_text(tmp_path / "README.md", "# card\n")
    finally:
        os.umask(previous)
    assert card.read_text() == "# card\n"
    assert card.stat().st_mode & 0o777 == mode
