"""Shared fixtures of the face tests: a tiny synthetic raw KoIn (with its faces.jsonl and a
photo without a face) and its `koin prepare --faces` output, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from koin_hf.cli import main
from koin_hf.synthetic.writer import generate_synthetic_koin


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    raw = generate_synthetic_koin(
        tmp_path_factory.mktemp("raw") / "raw",
        num_classes=3,
        seed=2,
        train_per_class=2,
        test_per_class=1,
        hard_per_class=1,
        group_per_class=1,
        progress=False,
    )
    # A photo with no face at all: it must stay in `normal` and be reported, not vanish.
    Image.new("RGB", (240, 300), (70, 110, 160)).save(raw / "normal_cases/train/0000/wall.jpg")
    return raw


@pytest.fixture(scope="session")
def prepared(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "koin"
    assert main(["prepare", str(raw), str(out), "--faces", "--image_size", "128"]) == 0
    return out
