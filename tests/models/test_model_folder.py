"""A saved model folder is whole (config.json, untruncated weights), or one sentence says why not."""

from __future__ import annotations

import shutil
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from koin_hf.errors import KoinError
from koin_hf.models.loading import load_model_and_processor
from koin_hf.models.model_folder import check_model_folder, file_problem, model_folder_problem

NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "vit"
    model, processor, _ = load_model_and_processor("vit-tiny", NAMES, seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "copy")


def test_a_whole_model_folder_passes(saved):
    assert model_folder_problem(saved) is None
    check_model_folder(saved)
    check_model_folder("someone/some-model")  # a Hub id: its loader reports on it


def test_truncated_weights_are_named_with_their_size(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    size = (folder / "model.safetensors").stat().st_size
    with open(folder / "model.safetensors", "r+b") as file:
        file.truncate(size - 1)
    with pytest.raises(KoinError) as error:
        check_model_folder(folder)
    assert str(error.value) == (
        f"cannot load the model folder {folder}: model.safetensors is truncated "
        f"({size - 1:,} of {size:,} bytes)"
    )
    with open(folder / "model.safetensors", "r+b") as file:
        file.truncate(5)
    assert "not even a header" in model_folder_problem(folder)


def test_missing_weights_or_config_are_named(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    assert model_folder_problem(folder) == (
        "there are no model weights (model.safetensors is missing)"
    )
    (folder / "config.json").write_text('{"model_type": ', encoding="utf-8")
    assert model_folder_problem(folder) == "config.json is not valid JSON (truncated?)"
    (folder / "config.json").unlink()
    assert "it has no config.json" in model_folder_problem(folder)
    with pytest.raises(KoinError, match="has no config.json"):
        load_model_and_processor(str(folder), NAMES)  # train.py's --model_name_or_path too


def test_sharded_weights_are_checked_shard_by_shard(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    save_file({"w": torch.zeros(64)}, tmp_path / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "w": "model-00001-of-00002.safetensors",
            "v": "model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(str(index).replace("'", '"'))
    assert model_folder_problem(tmp_path) == "model-00002-of-00002.safetensors is missing"


def test_torch_zip_files_are_checked_for_their_directory(tmp_path):
    path = tmp_path / "optimizer.pt"
    torch.save({"state": torch.ones(100)}, path)
    assert zipfile.is_zipfile(path) and file_problem(path) is None
    path.write_bytes(path.read_bytes()[:200])
    assert file_problem(path) == "optimizer.pt is truncated (its zip directory is missing)"


def test_a_missing_folder_written_as_a_path_is_named_not_taken_for_a_hub_id(tmp_path) -> None:
    for name in (str(tmp_path / "gone"), "./gone-model", "~/gone-model"):
        with pytest.raises(KoinError, match="model folder .*gone.* does not exist"):
            check_model_folder(name)
    check_model_folder("user/koin-vit")  # a Hub id: its loader reports on it
