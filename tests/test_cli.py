"""The `koin` console command: discoverable subcommands, one-line errors, a light `--help`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from koin_hf.cli import SUBCOMMANDS, main


def _koin(*args: str) -> subprocess.CompletedProcess:
    """Run the command the way a user does, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "koin_hf.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_subcommand_without_importing_torch():
    code = (
        "import sys\n"
        "from koin_hf.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print('heavy:', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert "exit 0" in result.stdout, result.stderr
    for name, (_module, help_text) in SUBCOMMANDS.items():
        assert name in result.stdout
        assert help_text[:30] in " ".join(result.stdout.split())
    assert "heavy: []" in result.stdout  # `koin --help` must stay instant


def test_unknown_subcommand_is_an_error_listing_the_choices():
    result = _koin("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr
    assert "prepare" in result.stderr and "Traceback" not in result.stderr


def test_no_arguments_prints_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 0
    assert "prepare" in capsys.readouterr().out


def test_prepare_help_documents_its_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("raw_dir", "out_dir", "--image-size", "--num-proc", ".zip"):
        assert word in text


def test_missing_prepare_arguments_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare"])
    assert exit_info.value.code == 2
    assert "usage: koin prepare" in capsys.readouterr().err
