"""Is a saved model folder whole? One sentence naming the folder and what is wrong, before loading.

transformers answers a truncated `model.safetensors` with a SafetensorError traceback from deep in
`from_pretrained`, and a missing one with an OSError after several warnings. These checks read
only file headers and sizes, so they cost nothing next to loading the weights. Training's
checkpoints (koin_hf.training.checkpoints) use the same file checks.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

from koin_hf.errors import KoinError

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
# What `from_pretrained` looks for, in its order: one file, or an index naming its shards.
WEIGHT_FILES = (SAFETENSORS_FILE, "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# The largest safetensors header the format allows (the reference reader refuses more).
MAX_SAFETENSORS_HEADER = 100_000_000


def file_problem(path: Path) -> str | None:
    """Why the file at `path` is not whole (truncated, unreadable), or None.

    Checked by kind: a safetensors file must be exactly as long as its header says; a torch zip
    (`torch.save`: .bin, .pt, .pth) must have its central directory, which is written last; a
    JSON file must parse. Other files only have to exist.
    """
    if not path.is_file():
        return f"{path.name} is missing"
    suffix = path.suffix
    try:
        if suffix == ".safetensors":
            return _safetensors_problem(path)
        if suffix in (".bin", ".pt", ".pth"):
            with path.open("rb") as file:
                zipped = file.read(2) == b"PK"  # torch.save's zip format (legacy pickles pass)
            if zipped and not zipfile.is_zipfile(path):
                return f"{path.name} is truncated (its zip directory is missing)"
            if path.stat().st_size == 0:
                return f"{path.name} is empty"
            return None
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        return f"{path.name} cannot be read ({err.strerror if isinstance(err, OSError) else err})"
    except ValueError:
        return f"{path.name} is not valid JSON (truncated?)"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes, not even a header)"
        (header_length,) = struct.unpack("<Q", head)
        if header_length > MAX_SAFETENSORS_HEADER or 8 + header_length > size:
            return f"{path.name} is truncated or not a safetensors file (its header is cut off)"
        try:
            header = json.loads(file.read(header_length))
        except (ValueError, UnicodeDecodeError):
            return f"{path.name} is not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return f"{path.name} is not a safetensors file (its header is not a JSON object)"
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    expected = 8 + header_length + max(ends, default=0)
    if size < expected:
        return f"{path.name} is truncated ({size:,} of {expected:,} bytes)"
    return None


def weights_problem(folder: Path) -> str | None:
    """Why the model weights in `folder` cannot be loaded whole, or None."""
    for name in WEIGHT_FILES:
        if (folder / name).exists():
            return file_problem(folder / name)
    for name in WEIGHT_INDEXES:
        index = folder / name
        if index.exists():
            problem = file_problem(index)
            if problem:
                return problem
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
            for shard in sorted(set(weight_map.values())):
                problem = file_problem(folder / shard)
                if problem:
                    return problem
            return None
    return f"there are no model weights ({SAFETENSORS_FILE} is missing)"


def model_folder_problem(folder: Path) -> str | None:
    """Why `folder` is not a loadable saved model (config.json and whole weights), or None."""
    if not (folder / CONFIG_FILE).is_file():
        return f"it has no {CONFIG_FILE}, so it is not a saved transformers model"
    return file_problem(folder / CONFIG_FILE) or weights_problem(folder)


def check_model_folder(model: str | os.PathLike) -> None:
    """A KoinError naming the folder and what is wrong when `model` is a local folder that is not
    a whole saved model; Hub ids and other names pass (their loader reports on them)."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        if str(model).startswith(("/", "./", "../", "~")) and not folder.exists():
            # written as a path, so no Hub id: say so instead of the Hub client's id rules
            raise KoinError(f"the model folder {model} does not exist")
        return
    if (folder / "adapter_config.json").is_file() and not (folder / CONFIG_FILE).exists():
        return  # a PEFT adapter folder: pipeline() loads its base model, then the adapter
    problem = model_folder_problem(folder)
    if problem:
        raise KoinError(f"cannot load the model folder {model}: {problem}")
