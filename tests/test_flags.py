"""One flag convention for every parser: underscores, hyphenated aliases, no abbreviations."""

from __future__ import annotations

import pytest

from koin_hf.cli import SUBCOMMANDS, _command_parser, main
from koin_hf.flags import KoinArgumentParser, spellings


def test_spellings_put_the_underscore_form_first():
    assert spellings(["--num-classes"]) == ["--num_classes", "--num-classes"]
    assert spellings(["--top_k", "--top-k"]) == ["--top_k", "--top-k"]
    assert spellings(["--seed", "-s"]) == ["--seed", "-s"]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_shows_underscore_flags_first(name):
    parser, _ = _command_parser(name)
    assert parser.allow_abbrev is False
    for action in parser._actions:
        long_options = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
        if any("-" in o[2:] or "_" in o[2:] for o in long_options):
            assert long_options[0] == spellings(long_options)[0], long_options


def test_both_spellings_reach_the_same_option():
    parser = KoinArgumentParser(prog="koin test")
    parser.add_argument("--num_classes", type=int, default=1)
    assert parser.parse_args(["--num-classes", "4"]).num_classes == 4
    assert parser.parse_args(["--num_classes", "5"]).num_classes == 5


def test_an_abbreviation_is_refused_with_the_nearest_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "out", "--num_class", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--num_class (did you mean --num_classes?)" in err and "See `koin synth --help`" in err
    assert "Traceback" not in err
