"""train.py end to end on tiny random models and a tiny prepared KoIn: real Trainer, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rawkoin import CLASS_NAMES, make_raw_koin
from transformers import AutoConfig, pipeline

from koin_hf.data.prepare import prepare_koin
from koin_hf.errors import KoinError
from koin_hf.models.registry import FAMILIES as REGISTRY
from koin_hf.models.registry import get_family
from koin_hf.run_record import RunRecord
from koin_hf.training.arguments import parse_arguments
from koin_hf.training.run import main, run_training

# End-to-end training runs (Trainer, Accelerate, two processes).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FAMILIES = list(REGISTRY)  # every family of the registry


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("koin")
    raw = make_raw_koin(
        root / "raw",
        per_split={
            "normal_cases/train": 8,
            "normal_cases/test": 3,
            "hard_cases/test": 3,
            "Group_cases/test": 2,
        },
    )
    prepare_koin(raw, root / "prepared", verbose=False)
    return root / "prepared"


def train(prepared: Path, out: Path, *extra: str) -> dict[str, float]:
    argv = [
        "--dataset_name", str(prepared),
        "--output_dir", str(out),
        "--model_name_or_path", "vit-tiny",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--num_train_epochs", "1",
        "--use_cpu", "true",
        "--dataloader_num_workers", "0",
        "--keep_checkpoints",  # the tests read them
        *extra,
    ]  # fmt: skip
    return run_training(*parse_arguments(argv))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_and_saves_a_pipeline_model(prepared, tmp_path, family):
    metrics = train(
        prepared, tmp_path / "out", "--model_name_or_path", f"{family}-tiny", "--max_steps", "2"
    )
    out = tmp_path / "out"
    for name in ("validation", "normal", "hard", "group"):
        assert (
            0.0
            <= metrics[f"eval_{name}_top1_accuracy"]
            <= metrics[f"eval_{name}_top3_accuracy"]
            <= 1.0
        )
    assert (out / "model.safetensors").is_file() and (out / "training_args.bin").is_file()
    config = AutoConfig.from_pretrained(out)
    assert [config.id2label[i] for i in range(len(CLASS_NAMES))] == list(CLASS_NAMES)
    info = RunRecord.load(out)
    assert info.family == family and info.method == "full"
    assert set(read_json(out / "all_results.json")) >= {
        "eval_hard_top3_accuracy",
        "eval_normal_top1_accuracy",
    }
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    from PIL import Image

    predictions = classifier(Image.new("RGB", (40, 48), (200, 10, 10)), top_k=3)
    assert {p["label"] for p in predictions} <= set(CLASS_NAMES) and len(predictions) == 3


def test_lora_saves_a_merged_model_and_optionally_the_adapter(prepared, tmp_path):
    out = tmp_path / "lora"
    train(prepared, out, "--lora", "--save_adapter", "--max_steps", "2")
    assert not (out / "adapter_config.json").exists(), "the model users load must be merged"
    assert (out / "adapter" / "adapter_config.json").is_file()
    info = RunRecord.load(out)
    assert info.method == "lora"
    assert info.lora.target_modules == list(get_family("vit").lora_target_modules)
    assert info.trainable_parameters < info.total_parameters
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    assert classifier.model.config.id2label[0] == CLASS_NAMES[0]


def test_linear_probe_trains_only_the_head(prepared, tmp_path):
    train(prepared, tmp_path / "probe", "--freeze_backbone", "--max_steps", "1")
    info = RunRecord.load(tmp_path / "probe")
    assert info.method == "linear_probe"
    # ViT-tiny head: hidden 32 x 3 classes + 3 biases.
    assert info.trainable_parameters == 32 * 3 + 3


def test_few_shot_sample_is_stratified_seeded_and_saved(prepared, tmp_path):
    train(prepared, tmp_path / "a", "--shots_per_class", "2", "--max_steps", "1", "--seed", "7")
    train(prepared, tmp_path / "b", "--shots_per_class", "2", "--max_steps", "1", "--seed", "7")
    train(prepared, tmp_path / "c", "--shots_per_class", "2", "--max_steps", "1", "--seed", "8")
    ids_a = read_json(tmp_path / "a" / "fewshot_ids.json")["image_ids"]
    ids_c = read_json(tmp_path / "c" / "fewshot_ids.json")["image_ids"]
    assert ids_a == read_json(tmp_path / "b" / "fewshot_ids.json")["image_ids"]
    assert ids_a != ids_c
    assert len(ids_a) == 2 * len(CLASS_NAMES)
    per_class = {cid: sum(f"/{cid}/" in i for i in ids_a) for cid in ("0000", "0001", "0002")}
    assert set(per_class.values()) == {2}
    assert all(i.startswith("normal_cases/train/") for i in ids_a), (
        "few-shot images come from train only"
    )


def test_too_many_shots_is_a_clear_error(prepared, tmp_path):
    with pytest.raises(KoinError, match="--shots_per_class 50 is more than class"):
        train(prepared, tmp_path / "x", "--shots_per_class", "50")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model_name_or_path", "alexnet"], "alexnet"),
        (["--label_column_name", "identity"], "no label column 'identity'"),
        (["--image_column_name", "image_id"], "not an image column"),
        (["--dataset_config_name", "sideways"], "no config 'sideways'"),
        (["--lora", "--lora_target_modules", "nonexistent_proj"], "nonexistent_proj"),
    ],
)
def test_bad_input_fails_before_training_with_one_sentence(
    prepared, tmp_path, capsys, extra, message
):
    argv = [
        "--dataset_name",
        str(prepared),
        "--output_dir",
        str(tmp_path / "o"),
        "--model_name_or_path",
        "vit-tiny",
    ]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_interrupted_run_resumes_to_the_same_step_and_metrics(prepared, tmp_path):
    # A constant schedule makes a run stopped after step 3 identical to the first 3 steps of a
    # 6-step run, so stopping there is a faithful interruption.
    common = ["--eval_strategy", "steps", "--eval_steps", "3", "--save_strategy", "steps", "--save_steps", "3",
              "--learning_rate", "1e-3", "--lr_scheduler_type", "constant", "--warmup_steps", "0"]  # fmt: skip
    straight = train(prepared, tmp_path / "straight", *common, "--max_steps", "6")
    interrupted = tmp_path / "interrupted"
    train(prepared, interrupted, *common, "--max_steps", "3")
    assert not (interrupted / "checkpoints" / "checkpoint-6").exists()
    resumed = train(
        prepared, interrupted, *common, "--max_steps", "6", "--resume_from_checkpoint", "last"
    )
    assert (
        read_json(interrupted / "checkpoints" / "checkpoint-6" / "trainer_state.json")[
            "global_step"
        ]
        == 6
    )
    for key in (
        "eval_normal_top1_accuracy",
        "eval_hard_top3_accuracy",
        "eval_validation_loss",
        "eval_normal_loss",
    ):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-5), key


@pytest.mark.skipif(sys.platform != "linux", reason="gloo CPU launch tested on Linux")
def test_two_cpu_processes_evaluate_every_test_image_once(prepared, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"), str(REPO / "train.py"), "--dataset_name", str(prepared), "--output_dir", str(out),
        "--model_name_or_path", "vit-tiny", "--max_steps", "2", "--per_device_eval_batch_size", "4",
        "--per_device_train_batch_size", "4", "--keep_checkpoints",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_json(out / "all_results.json")
    info = RunRecord.load(out)
    assert info.world_size == 2
    # 3 classes x 3 normal test images = 9: odd, so the distributed sampler pads one duplicate,
    # which gather_for_metrics must drop again.
    assert results["eval_normal_num_samples"] == 9
    assert results["eval_hard_num_samples"] == 9
    assert results["eval_group_num_samples"] == 6
    # Both processes trained: 2 steps x 4 images x 2 processes.
    state = read_json(out / "checkpoints" / "checkpoint-2" / "trainer_state.json")
    assert state["global_step"] == 2 and info.train_images == 21
    assert (
        "set          images" in result.stdout
        and result.stdout.count("Saved a pipeline-ready") == 1
    )


def test_best_checkpoint_is_restored_exactly(prepared, tmp_path):
    """Every layer of the saved model equals the best checkpoint's (Trainer's own loader drops renamed keys)."""
    from safetensors.torch import load_file

    out = tmp_path / "best"
    train(prepared, out, "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2",
          "--save_strategy", "steps", "--save_steps", "2", "--learning_rate", "5e-3")  # fmt: skip
    best = read_json(out / "checkpoints" / "checkpoint-4" / "trainer_state.json")[
        "best_model_checkpoint"
    ]
    saved, expected = (
        load_file(out / "model.safetensors"),
        load_file(Path(best) / "model.safetensors"),
    )
    assert saved.keys() == expected.keys()
    for key in saved:
        assert (saved[key] == expected[key]).all(), key


def test_streamed_dataset_trains_through_the_same_path(prepared, tmp_path):
    out = tmp_path / "streamed"
    metrics = train(prepared, out, "--streaming", "--max_steps", "3", "--shuffle_buffer_size", "16")
    assert (
        read_json(out / "checkpoints" / "checkpoint-3" / "trainer_state.json")["global_step"] == 3
    )
    assert "eval_validation_top1_accuracy" not in metrics  # a stream has no carved validation split
    assert metrics["eval_hard_num_samples"] == 9
    assert (
        pipeline("image-classification", model=str(out), device="cpu").model.config.id2label[1]
        == CLASS_NAMES[1]
    )


def test_streaming_without_max_steps_is_a_clear_error(prepared, tmp_path):
    with pytest.raises(KoinError, match="--streaming needs --max_steps"):
        train(prepared, tmp_path / "s", "--streaming")


PULL_MODEL = """
import json, sys
from PIL import Image
from transformers import pipeline
classifier = pipeline("image-classification", model=sys.argv[1])
print(json.dumps(classifier(Image.open(sys.argv[2]), top_k=3)))
"""


def test_push_to_hub_uploads_the_merged_lora_model_with_its_card(prepared, tmp_path, hub):
    """train.py --push_to_hub goes through koin push's function, to a real HTTP Hub server."""
    from hub_server import TEST_USER

    repo_id = f"{TEST_USER}/koin-vit-lora"
    out = tmp_path / "pushed"
    command = [sys.executable, str(REPO / "train.py"), "--dataset_name", str(prepared),
               "--output_dir", str(out), "--model_name_or_path", "vit-tiny", "--max_steps", "2",
               "--lora", "--push_to_hub", "--hub_model_id", repo_id]  # fmt: skip
    result = subprocess.run(
        command, env=hub.client_env(tmp_path / "home"), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = hub.repo_files(repo_id)
    assert "model.safetensors" in remote and "adapter_config.json" not in remote
    assert not any(name.startswith(("checkpoint-", "checkpoints/")) for name in remote)
    card = remote["README.md"].decode()
    assert "pipeline_tag: image-classification" in card and "lora" in card and repo_id in card

    image = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (40, 48), (10, 200, 10)).save(image)
    pulled = subprocess.run([sys.executable, "-c", PULL_MODEL, repo_id, str(image)],
                            env=hub.client_env(tmp_path / "home2", token=None), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    remote_predictions = json.loads(pulled.stdout.strip().splitlines()[-1])
    local_predictions = pipeline("image-classification", model=str(out), device="cpu")(
        Image.open(image), top_k=3
    )
    assert [p["label"] for p in remote_predictions] == [p["label"] for p in local_predictions]
    assert {p["label"] for p in remote_predictions} == set(CLASS_NAMES)


@pytest.mark.parametrize("family", ["vit", "lite0"])
def test_end_of_run_table_equals_koin_evaluate(prepared, tmp_path, family):
    from koin_hf.evaluation.run import evaluate_model

    out = tmp_path / "model"
    metrics = train(
        prepared,
        out,
        "--model_name_or_path",
        f"{family}-tiny",
        "--max_steps",
        "3",
        "--learning_rate",
        "5e-3",
    )
    report = evaluate_model(
        str(out),
        str(prepared),
        configs=["normal", "hard", "group"],
        output_dir=tmp_path / "eval",
        plots=False,
    )
    for config in ("normal", "hard", "group"):
        for k in (1, 3):
            assert report["configs"][config][f"top{k}_accuracy"] == pytest.approx(
                metrics[f"eval_{config}_top{k}_accuracy"], abs=1e-9
            ), (config, k)


def test_zero_shot_head_init_starts_clip_from_the_class_names(prepared, tmp_path):
    from tinyclip import make_tiny_clip_dir

    clip_dir = make_tiny_clip_dir(tmp_path / "clip")
    out = tmp_path / "zs"
    train(
        prepared,
        out,
        "--model_name_or_path",
        str(clip_dir),
        "--zero_shot_head_init",
        "--max_steps",
        "1",
    )
    assert RunRecord.load(out).zero_shot_head_init is True
    with pytest.raises(KoinError, match="text tower"):
        train(
            prepared, tmp_path / "x", "--model_name_or_path", "clip-tiny", "--zero_shot_head_init"
        )
    with pytest.raises(KoinError, match="needs a CLIP model"):
        train(prepared, tmp_path / "y", "--zero_shot_head_init")


def test_early_stopping_with_bf16_and_gradient_accumulation(prepared, tmp_path):
    # A learning rate of 1e-12 (0 is refused) never changes a prediction, so validation accuracy
    # never improves and patience 1 stops at the second evaluation.
    out = tmp_path / "early"
    train(prepared, out, "--max_steps", "20", "--eval_strategy", "steps", "--eval_steps", "1",
          "--save_strategy", "steps", "--save_steps", "1", "--learning_rate", "1e-12",
          "--early_stopping_patience", "1", "--gradient_accumulation_steps", "2", "--bf16", "true")  # fmt: skip
    info = RunRecord.load(out)
    assert info.global_steps == 2
    assert info.precision == "bf16"


def test_accelerate_single_thread_default_is_undone_on_cpu(monkeypatch):
    import torch

    from koin_hf.training.run import use_all_cpu_cores

    before = torch.get_num_threads()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what `accelerate launch` exports without --cpu
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    torch.set_num_threads(1)
    try:
        use_all_cpu_cores()
        assert torch.get_num_threads() == os.cpu_count()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(os.cpu_count()))  # one core per process
        torch.set_num_threads(1)
        use_all_cpu_cores()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _epoch_evaluations(out: Path) -> list[set[str]]:
    """The metric names logged at each evaluation during training (from the last checkpoint)."""
    checkpoint = max(
        out.glob("checkpoints/checkpoint-*"), key=lambda path: int(path.name.split("-")[1])
    )
    history = read_json(checkpoint / "trainer_state.json")["log_history"]
    by_epoch: dict[float, set[str]] = {}  # Trainer logs each eval set as its own entry
    for entry in history:
        if any(key.startswith("eval_") for key in entry):
            by_epoch.setdefault(entry["epoch"], set()).update(entry)
    return list(by_epoch.values())


@pytest.mark.parametrize("each_epoch", [False, True])
def test_test_sets_are_scored_once_at_the_end_unless_asked_per_epoch(
    prepared, tmp_path, each_epoch
):
    extra = ["--eval_test_sets_each_epoch"] if each_epoch else []
    metrics = train(prepared, tmp_path / "out", "--num_train_epochs", "2", *extra)
    evaluations = _epoch_evaluations(tmp_path / "out")
    assert len(evaluations) == 2  # one per epoch
    for keys in evaluations:
        assert "eval_validation_top1_accuracy" in keys
        assert ("eval_normal_top1_accuracy" in keys) is each_epoch
        assert ("eval_group_top1_accuracy" in keys) is each_epoch
    # The end of the run scores every set from the chosen checkpoint either way.
    for name in ("validation", "normal", "hard", "group"):
        assert f"eval_{name}_top1_accuracy" in metrics


def test_the_output_folder_and_checkpoints_follow_the_umask(prepared, tmp_path):
    """safetensors writes weights 0600; a model folder on shared storage must be readable."""
    previous = os.umask(0o022)
    try:
        train(prepared, tmp_path / "out", "--max_steps", "2")
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    checkpoint_weights = list(out.glob("checkpoints/checkpoint-*/model.safetensors"))
    assert checkpoint_weights, "the run should have kept a checkpoint"
    for path in [out, *out.rglob("*")]:
        expected = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == expected, path
