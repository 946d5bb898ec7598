"""The `koin` console command: discoverable subcommands, one-line errors, a light `--help`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    (line,) = capsys.readouterr().err.splitlines()  # one line, not argparse's usage block
    assert line == (
        "koin prepare: error: the following arguments are required: raw_dir, out_dir "
        "(see `koin prepare --help`)"
    )


REPO = Path(__file__).resolve().parents[1]

# Each misuse the README promises one sentence for: (program, arguments, words the line holds).
# {out}, {garbage}, {file}, {other_model}, {truncated}, {no_weights}, {image} are filled in below.
MISUSES = {
    "bare dataset name": ("train.py", ["--dataset_name", "koin"], "dataset koin not found: no folder koin in"),
    "batch size 0": ("train.py", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be at least 1, got 0"),
    "learning rate nan": ("train.py", ["--learning_rate", "nan"], "--learning_rate must be a finite number above 0, got nan"),
    "learning rate 0": ("koin train", ["--learning_rate", "0"], "--learning_rate must be a finite number above 0, got 0.0"),
    "zero epochs": ("train.py", ["--num_train_epochs", "0"], "--num_train_epochs must be above 0"),
    "zero steps": ("train.py", ["--max_steps", "0"], "--max_steps must be a positive number of steps"),
    "zero shots": ("train.py", ["--shots_per_class", "0"], "--shots_per_class must be at least 1, got 0"),
    "lora rank 0": ("train.py", ["--lora", "--lora_r", "0"], "--lora_r must be at least 1, got 0"),
    "best model without evaluations": ("train.py", ["--eval_strategy", "no", "--load_best_model_at_end", "true"], "--load_best_model_at_end needs evaluations to pick from"),
    "transformers' own check": ("train.py", ["--eval_strategy", "steps", "--eval_steps", "5"], "invalid training arguments: --load_best_model_at_end requires the save and eval strategy to match"),
    "bad float": ("train.py", ["--learning_rate", "fast"], "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
    "resume from a garbage folder": ("train.py", ["--resume_from_checkpoint", "{garbage}"], "--resume_from_checkpoint {garbage} is not a complete checkpoint: it has no trainer_state.json"),
    "resume from a file": ("train.py", ["--resume_from_checkpoint", "{file}"], "--resume_from_checkpoint {file} is a file"),
    "resume with nothing to resume": ("train.py", ["--resume_from_checkpoint", "last"], "--resume_from_checkpoint last: {out} does not exist, so there is nothing to resume"),
    "output folder holding another model": ("train.py", ["--output_dir", "{other_model}"], "{other_model} holds another model"),
    "evaluate truncated weights": ("koin evaluate", ["{truncated}", "--dataset", "{garbage}"], "cannot load the model folder {truncated}: model.safetensors is truncated"),
    "evaluate missing weights": ("koin evaluate", ["{no_weights}", "--dataset", "{garbage}"], "cannot load the model folder {no_weights}: there are no model weights (model.safetensors is missing)"),
    "predict truncated weights": ("koin predict", ["{truncated}", "{image}"], "cannot load the model folder {truncated}: model.safetensors is truncated"),
    "predict missing weights": ("koin predict", ["{no_weights}", "{image}"], "cannot load the model folder {no_weights}: there are no model weights"),
}  # fmt: skip


@pytest.fixture(scope="module")
def misuse_files(tmp_path_factory) -> dict[str, str]:
    """A garbage folder, a file, a folder holding another model, a model folder to damage twice."""
    from PIL import Image

    from koin_hf.models.loading import load_model_and_processor

    root = tmp_path_factory.mktemp("misuse")
    (root / "garbage").mkdir()
    (root / "garbage" / "junk.txt").write_text("not a checkpoint", encoding="utf-8")
    (root / "file.bin").write_bytes(b"\0" * 10)
    (root / "other").mkdir()
    (root / "other" / "config.json").write_text('{"model_type": "resnet"}', encoding="utf-8")
    model, processor, _ = load_model_and_processor("vit-tiny", ["a", "b", "c"], seed=0)
    for name in ("truncated", "no_weights"):
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    weights = root / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    (root / "no_weights" / "model.safetensors").unlink()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(root / "face.png")
    return {
        "root": str(root), "out": str(root / "out"), "garbage": str(root / "garbage"),
        "file": str(root / "file.bin"), "other_model": str(root / "other"),
        "truncated": str(root / "truncated"), "no_weights": str(root / "no_weights"),
        "image": str(root / "face.png"),
    }  # fmt: skip


@pytest.mark.slow  # one fresh interpreter (torch, transformers) per case: ~8 s each on 2 cores
@pytest.mark.parametrize("misuse", list(MISUSES))
def test_each_misuse_is_one_line_and_exit_code_2_never_a_traceback(misuse_files, misuse):
    program, arguments, expected = MISUSES[misuse]
    arguments = [argument.format(**misuse_files) for argument in arguments]
    if program == "train.py":
        command = [sys.executable, str(REPO / "train.py")]
    else:
        command = [sys.executable, "-m", "koin_hf.cli", program.split()[1]]
    if program in ("train.py", "koin train") and "--output_dir" not in arguments:
        arguments += ["--output_dir", misuse_files["out"]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(Path(misuse_files["root"]) / "hf")}
    result = subprocess.run(
        [*command, *arguments], capture_output=True, text=True, timeout=300,
        cwd=misuse_files["root"], env=env,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith(f"{program}: error: "), lines[0]
    assert expected.format(**misuse_files) in lines[0]
    assert not Path(misuse_files["out"]).exists(), "a refused run leaves no output folder behind"
