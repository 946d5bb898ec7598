"""The embedded synthetic KoIn cache: built once, reused, and always marked as generated data."""

from __future__ import annotations

import json

import pytest

from koin_hf.data.default_dataset import ensure_default_dataset
from koin_hf.hub.provenance import SYNTHETIC_MARKER_FILE, prepared_folder_is_synthetic

pytestmark = pytest.mark.slow  # generates and prepares a (2-class) synthetic KoIn


def test_cache_is_reused_and_an_unmarked_old_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("KOIN_HF_CACHE", str(tmp_path))
    prepared = ensure_default_dataset(num_classes=2)
    assert prepared_folder_is_synthetic(prepared)
    report = prepared / "prepare_report.json"
    stamp = report.stat().st_mtime_ns
    assert ensure_default_dataset(num_classes=2) == prepared
    assert report.stat().st_mtime_ns == stamp  # reused, not rebuilt

    # A cache written before the marker existed: no SYNTHETIC.json, no `synthetic` in the report.
    (prepared.parent / "raw" / SYNTHETIC_MARKER_FILE).unlink()
    old = json.loads(report.read_text())
    old.pop("synthetic")
    report.write_text(json.dumps(old))
    assert not prepared_folder_is_synthetic(prepared)

    assert ensure_default_dataset(num_classes=2) == prepared
    assert prepared_folder_is_synthetic(prepared)
    assert (prepared.parent / "raw" / SYNTHETIC_MARKER_FILE).is_file()
