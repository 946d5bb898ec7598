"""What the data is: the real KoIn photos, or koin-hf's generated stand-in.

The fact travels with the files, so every card can say it: `koin synth` writes `SYNTHETIC.json`
beside `classes.csv`; `koin prepare` copies its content into `prepare_report.json` (key
`synthetic`, null for real data), which the dataset card reads; a model card reads the run record
(`RunRecord.is_synthetic`) or, when the run named a local prepared folder, that folder's report.
This module sits in the hub stage so that the synthetic writer, prepare and the cards, all later
stages, share one definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from koin_hf.version import __version__

SYNTHETIC_MARKER_FILE = "SYNTHETIC.json"
# The generated images and names are koin-hf's own output, so they carry koin-hf's licence
# (pyproject.toml: Apache-2.0, spelled as the Hub's `license:` identifier), not KoIn's terms.
GENERATOR_LICENSE = "apache-2.0"
GENERATOR_LICENSE_NAME = "Apache-2.0"
GENERATOR = "koin-hf synth"
REPORT_KEY = "synthetic"


def synthetic_marker(**details: Any) -> dict[str, Any]:
    """What `koin synth` records about a generated folder (seed, classes, ...) as JSON-able dict."""
    return {
        "generator": GENERATOR,
        "koin_hf_version": __version__,
        "license": GENERATOR_LICENSE_NAME,
        "real_people": False,
        **details,
    }


def write_synthetic_marker(folder: str | Path, **details: Any) -> Path:
    path = Path(folder) / SYNTHETIC_MARKER_FILE
    text = json.dumps(synthetic_marker(**details), indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def read_synthetic_marker(*folders: str | Path) -> dict[str, Any] | None:
    """The marker of the first folder that holds one (None: real data).

    An unreadable marker still means generated data: the file's presence is the fact, its
    content only details.
    """
    for folder in folders:
        path = Path(folder) / SYNTHETIC_MARKER_FILE
        if path.is_file():
            try:
                details = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                details = None
            return details if isinstance(details, dict) else synthetic_marker()
    return None


def report_is_synthetic(report: Mapping[str, Any] | None) -> bool:
    """True when a `prepare_report.json` dict describes generated data."""
    return bool(report and report.get(REPORT_KEY))


def prepared_folder_is_synthetic(folder: str | Path) -> bool:
    """True when `folder` is a prepared dataset whose report says it was generated."""
    path = Path(folder).expanduser() / "prepare_report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(report, dict) and report_is_synthetic(report)
