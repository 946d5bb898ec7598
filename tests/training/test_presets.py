"""Every preset shipped in configs/paper/ loads through train.py's real argument parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from koin_hf.models.registry import FAMILIES
from koin_hf.training.arguments import parse_arguments

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "paper"
FAMILY_PRESETS = sorted(p for p in PRESETS.glob("*.yaml") if "model_name_or_path" in p.read_text())
PROTOCOL_PRESETS = sorted(set(PRESETS.glob("*.yaml")) - set(FAMILY_PRESETS))
BASE = ["--output_dir", "unused-out"]


def _ids(paths):
    return [p.stem for p in paths]


def _stem(path: Path) -> str:
    return path.stem


def test_the_presets_are_the_ones_documented():
    assert _ids(PROTOCOL_PRESETS) == ["50shot", "5shot", "full"]
    assert len(FAMILY_PRESETS) == 9


def _check_applied(preset: Path, parsed) -> None:
    """Every key of the preset reached the dataclass that owns it, with the preset's value."""
    values = yaml.safe_load(preset.read_text(encoding="utf-8"))
    owners = {name: args for args in parsed for name in vars(args)}
    for key, value in values.items():
        assert key in owners, f"{preset.name}: {key} is no train.py argument"
        got = getattr(owners[key], key)
        if isinstance(got, float):  # YAML 1.1 reads `1e-3` as a string; the parser as a number
            value = float(value)
        assert got == value, f"{preset.name}: {key}={got!r}, not {value!r}"


@pytest.mark.parametrize("preset", FAMILY_PRESETS + PROTOCOL_PRESETS, ids=_stem)
def test_each_preset_parses_alone(preset):
    parsed = parse_arguments([str(preset), *BASE])
    _check_applied(preset, parsed)
    model_args = parsed[0]
    assert model_args.model_name_or_path in FAMILIES or preset in PROTOCOL_PRESETS


@pytest.mark.parametrize("protocol", PROTOCOL_PRESETS, ids=_stem)
@pytest.mark.parametrize("family", FAMILY_PRESETS, ids=_stem)
def test_family_and_protocol_presets_combine(family, protocol):
    """The README's `train.py configs/paper/vit.yaml configs/paper/5shot.yaml`, for every pair."""
    parsed = parse_arguments([str(family), str(protocol), *BASE, "--bf16", "false"])
    _check_applied(protocol, parsed)
    family_values = yaml.safe_load(family.read_text(encoding="utf-8"))
    assert parsed[0].model_name_or_path == family_values["model_name_or_path"]
    assert parsed[2].bf16 is False  # a flag after the presets overrides them
