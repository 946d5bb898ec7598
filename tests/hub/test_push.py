"""`koin push` / `koin push-dataset` against a real HTTP Hub-protocol server (tests/hub_server.py).

Every push and pull runs in a subprocess with HF_ENDPOINT pointing at the local server, because
huggingface_hub reads it at import time (and this test process runs with HF_HUB_OFFLINE=1). The
clients are the real ones: huggingface_hub uploads (regular + git-LFS), transformers'
`pipeline()` downloads the model, datasets' `load_dataset()` resolves the dataset repo.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import TEST_TOKEN, TEST_USER, HubServer
from huggingface_hub import ModelCard
from records import LORA_VIT_RUN

from koin_hf.errors import KoinError
from koin_hf.hub.dataset_card import write_dataset_card
from koin_hf.hub.model_card import render_model_card
from koin_hf.hub.push import push_dataset, push_model
from koin_hf.models.loading import load_model_and_processor

# Round trips through a local Hub server with the real clients.
pytestmark = pytest.mark.slow

NAMES = ["Kim Ji-soo", "Lee: Min-ho", 'Park "Bo-gum"', "IU | 아이유"]
RESULTS = {
    "eval_normal_top1_accuracy": 0.5,
    "eval_normal_top3_accuracy": 1.0,
    "eval_hard_top1_accuracy": 0.25,
}
TRAINING = LORA_VIT_RUN

PULL_MODEL = """
import json, sys
from transformers import pipeline
classifier = pipeline("image-classification", model=sys.argv[1])
print(json.dumps(classifier(sys.argv[2], top_k=4)))
"""
PULL_DATASET = """
import hashlib, json, sys
from datasets import Image, load_dataset
dataset = load_dataset(sys.argv[1], "hard")
test = dataset["test"].cast_column("image", Image(decode=False))
print(json.dumps({
    "splits": list(dataset),
    "names": test.features["label"].names,
    "rows": [[r["image_id"], r["label"], hashlib.sha256(r["image"]["bytes"]).hexdigest()] for r in test],
}))
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def koin(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["-m", "koin_hf.cli", *args], env)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def face_image(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def model_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained-like ViT folder: real label names, image processor, koin metadata."""
    folder = tmp_path_factory.mktemp("template") / "model"
    model, processor, _ = load_model_and_processor("vit-tiny", NAMES, seed=0)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    TRAINING.save(folder)
    (folder / "all_results.json").write_text(json.dumps(RESULTS))
    return folder


@pytest.fixture
def model_dir(model_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_template, tmp_path / "model"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_model_then_pipeline_loads_it(
    hub: HubServer, model_template: Path, model_dir: Path, tmp_path: Path
) -> None:
    from transformers import pipeline

    before = snapshot(model_dir)
    repo_id = f"{TEST_USER}/koin-vit-tiny"
    pushed = koin(["push", str(model_dir), "--repo-id", repo_id], hub.client_env(tmp_path / "home"))
    assert pushed.returncode == 0, pushed.stderr + "\n".join(hub.state.requests)

    head = hub.state.repos[("model", repo_id)].branches["main"]
    assert pushed.stdout.splitlines() == [
        f"Pushed {model_dir} to {hub.url}/{repo_id}",
        f"commit {head}",
    ]
    remote = hub.repo_files(repo_id)
    assert {name: remote[name] for name in before} == before  # every file, byte for byte
    assert {"model.safetensors"} <= hub.lfs_paths(repo_id)  # weights went through git-LFS
    # the card was uploaded from memory, then saved locally once the push had succeeded
    assert (model_dir / "README.md").read_bytes() == remote["README.md"]
    assert set(snapshot(model_dir)) == set(before) | {"README.md"}
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.base_model == TRAINING.base_model
    assert {"peft", "lora"} <= set(card.data.tags)
    assert f'model="{repo_id}"' in card.text
    assert not any(
        TEST_TOKEN.encode() in data for data in [*remote.values(), pushed.stdout.encode()]
    )

    image = face_image(tmp_path / "face.png")
    pulled = run(
        ["-c", PULL_MODEL, repo_id, str(image)], hub.client_env(tmp_path / "home2", token=None)
    )
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    remote_predictions = json.loads(pulled.stdout.strip().splitlines()[-1])
    local = pipeline("image-classification", model=str(model_template))  # the original folder
    local_predictions = local(str(image), top_k=4)
    assert [p["label"] for p in remote_predictions] == [p["label"] for p in local_predictions]
    assert sorted(p["label"] for p in remote_predictions) == sorted(
        NAMES
    )  # real names, not LABEL_i
    for remote_p, local_p in zip(remote_predictions, local_predictions, strict=True):
        assert remote_p["score"] == pytest.approx(local_p["score"], abs=1e-5)


def test_second_push_to_a_branch_keeps_main_and_the_card(
    hub: HubServer, model_dir: Path, tmp_path: Path
) -> None:
    env = hub.client_env(tmp_path / "home")
    repo_id = f"{TEST_USER}/koin-branches"
    assert koin(["push", str(model_dir), "--repo-id", repo_id, "--private"], env).returncode == 0
    main_files = hub.repo_files(repo_id)
    card = (model_dir / "README.md").read_text()
    (model_dir / "all_results.json").write_text(
        json.dumps({**RESULTS, "eval_hard_top1_accuracy": 0.75})
    )

    again = koin(["push", str(model_dir), "--repo-id", repo_id, "--revision", "dev"], env)
    assert again.returncode == 0, again.stderr
    assert f"{hub.url}/{repo_id}/tree/dev" in again.stdout
    assert hub.repo_files(repo_id) == main_files  # main untouched
    dev_files = hub.repo_files(repo_id, revision="dev")
    assert json.loads(dev_files["all_results.json"])["eval_hard_top1_accuracy"] == 0.75
    assert dev_files["README.md"].decode() == card  # an existing card is uploaded as it is
    assert hub.state.repos[("model", repo_id)].private


@pytest.mark.parametrize(
    "case", ["no token", "wrong token", "hub unreachable", "foreign namespace"]
)
def test_push_failures_are_one_line_and_change_nothing(
    case: str, hub: HubServer, model_dir: Path, tmp_path: Path
) -> None:
    token = {"no token": None, "wrong token": "hf_" + "x" * 34}.get(case, TEST_TOKEN)
    env = hub.client_env(tmp_path / "home", token=token)
    if case == "hub unreachable":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    before = snapshot(model_dir)

    owner = "someone-else" if case == "foreign namespace" else TEST_USER
    result = koin(["push", str(model_dir), "--repo-id", f"{owner}/never"], env)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("koin push: error: "), result.stderr
    expected = {
        "no token": "no Hugging Face token found",
        "wrong token": "rejected the token (401 Unauthorized)",
        "hub unreachable": "cannot reach the Hugging Face Hub at http://127.0.0.1:",
        "foreign namespace": "your token may not write to someone-else/never (403 Forbidden)",
    }[case]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert (token or TEST_TOKEN) not in result.stderr
    assert snapshot(model_dir) == before  # no card written, nothing half-done
    assert hub.state.repos == {}  # and no repo created


def build_prepared_dataset(folder: Path) -> dict[str, list]:
    """A tiny `koin prepare`-style folder: parquet per config + README YAML configs + report."""
    import datasets
    import numpy as np
    from PIL import Image

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=NAMES),
            "image_id": datasets.Value("string"),
        }
    )
    splits = {"normal": ["train", "test"], "hard": ["test"], "group": ["test"]}
    report: dict = {
        "configs": {},
        "class_names": NAMES,
        "skipped": [],
        "source": "/home/alice/raw/KoIn",
    }
    expected_hard = []
    rng = np.random.default_rng(0)
    for config, names in splits.items():
        (folder / config).mkdir(parents=True)
        report["configs"][config] = {}
        for split in names:
            rows: dict[str, list] = {"image": [], "label": [], "image_id": []}
            for i in range(5):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    buffer, format="JPEG"
                )
                rows["image"].append({"bytes": buffer.getvalue(), "path": None})
                rows["label"].append(i % len(NAMES))
                rows["image_id"].append(f"{config}_cases/{split}/{i % len(NAMES):04d}/img_{i}.jpg")
                if config == "hard":
                    expected_hard.append(
                        [
                            rows["image_id"][-1],
                            i % len(NAMES),
                            hashlib.sha256(buffer.getvalue()).hexdigest(),
                        ]
                    )
            dataset = datasets.Dataset.from_dict(rows, features=features)
            dataset.to_parquet(str(folder / config / f"{split}-00000-of-00001.parquet"))
            counts = {name: rows["label"].count(i) for i, name in enumerate(NAMES)}
            report["configs"][config][split] = {"images": 5, "per_class": counts}
    header = {
        "configs": [
            {
                "config_name": config,
                "data_files": [{"split": split, "path": f"{config}/{split}-*"} for split in names],
                **({"default": True} if config == "normal" else {}),
            }
            for config, names in splits.items()
        ]
    }
    (folder / "prepare_report.json").write_text(json.dumps(report, indent=2))
    write_dataset_card(folder, header, report)
    return {"names": NAMES, "rows": expected_hard}


def test_push_dataset_then_load_dataset_reads_it(hub: HubServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "koin"
    expected = build_prepared_dataset(data_dir)
    before = snapshot(data_dir)
    repo_id = f"{TEST_USER}/koin"

    pushed = koin(
        ["push-dataset", str(data_dir), "--repo-id", repo_id], hub.client_env(tmp_path / "home")
    )
    assert pushed.returncode == 0, pushed.stderr + "\n".join(hub.state.requests)
    assert f"{hub.url}/datasets/{repo_id}" in pushed.stdout
    assert snapshot(data_dir) == before  # pushing a dataset changes nothing locally
    remote = hub.repo_files(repo_id, repo_type="dataset")
    assert remote["README.md"] == before["README.md"]  # YAML configs kept for load_dataset
    assert remote["hard/test-00000-of-00001.parquet"] == before["hard/test-00000-of-00001.parquet"]
    assert json.loads(remote["prepare_report.json"])["source"] == "KoIn"  # no local path on the Hub

    pulled = run(["-c", PULL_DATASET, repo_id], hub.client_env(tmp_path / "home2", token=None))
    assert pulled.returncode == 0, pulled.stderr[-3000:] + "\n".join(hub.state.requests)
    loaded = json.loads(pulled.stdout.strip().splitlines()[-1])
    assert loaded["splits"] == ["test"]
    assert loaded["names"] == expected["names"]
    assert loaded["rows"] == expected["rows"]  # same images, labels and ids, in order


def test_push_checks_its_inputs_before_any_network_call(tmp_path: Path) -> None:
    with pytest.raises(KoinError, match="does not exist"):
        push_model(tmp_path / "missing", "user/x")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(KoinError, match="no model weights"):
        push_model(tmp_path / "m", "user/x")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"token": TEST_TOKEN}))
    with pytest.raises(KoinError) as raised:
        push_model(tmp_path / "m", "user/x", token=TEST_TOKEN, dry_run=True)
    assert str(raised.value) == (
        f"{tmp_path / 'm' / 'config.json'} would not be uploaded (contains the Hub token in use); "
        "nothing was pushed"
    )
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "README.md").write_text("# no yaml\n")
    with pytest.raises(KoinError, match="no YAML `configs:`"):
        push_dataset(tmp_path / "d", "user/koin")
    (tmp_path / "d" / "README.md").write_text(
        "---\nconfigs:\n- config_name: hard\n  data_files:\n  - split: test\n    path: hard/test-*\n---\n"
    )
    with pytest.raises(KoinError, match="'hard/test-\\*', which matches no file"):
        push_dataset(tmp_path / "d", "user/koin")
    with pytest.raises(KoinError, match="not a valid Hub id"):
        push_dataset(tmp_path / "d", "user/bad name")


# --- what a push uploads ------------------------------------------------------------------------


def add_unpublishable_files(folder: Path, outside: Path) -> None:
    """Credentials, the token, a checkpoint, links: everything a push must leave out or refuse."""
    (folder / "hf_token.txt").write_text(TEST_TOKEN)
    (folder / "credentials.json").write_text(json.dumps({"token": TEST_TOKEN}))
    (folder / "token").write_text(TEST_TOKEN)
    (folder / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (folder / ".huggingface").mkdir()
    (folder / ".huggingface" / "token").write_text(TEST_TOKEN)
    (folder / "notes.md").write_text(f"pushed with {TEST_TOKEN}\n")  # an innocent name
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (folder / "labels.json").symlink_to(folder / "config.json")  # inside: followed


EXCLUDED_LINES = [
    "Not uploaded (7):",
    "  .huggingface/: credential folder, 1 file",
    "  checkpoint-2/: Trainer checkpoint folder, 1 file",
    "  credentials.json: credential-like name",
    "  hf_token.txt: credential-like name",
    "  id_rsa: credential-like name",
    "  notes.md: contains the Hub token in use",
    "  token: credential-like name",
]


@pytest.mark.parametrize("token_from", ["HF_TOKEN", "--token"])
def test_push_uploads_only_regular_files_inside_and_names_what_it_leaves_out(
    token_from: str, hub: HubServer, model_dir: Path, tmp_path: Path
) -> None:
    expected = set(snapshot(model_dir)) | {"README.md", "labels.json"}
    add_unpublishable_files(model_dir, tmp_path)
    env = hub.client_env(tmp_path / "home", token=TEST_TOKEN if token_from == "HF_TOKEN" else None)
    extra = ["--token", TEST_TOKEN] if token_from == "--token" else []
    repo_id = f"{TEST_USER}/koin-clean"

    pushed = koin(["push", str(model_dir), "--repo_id", repo_id, *extra], env)

    assert pushed.returncode == 0, pushed.stderr
    head = hub.state.repos[("model", repo_id)].branches["main"]
    assert pushed.stdout.splitlines() == [
        *EXCLUDED_LINES,
        f"Pushed {model_dir} to {hub.url}/{repo_id}",
        f"commit {head}",
    ]
    remote = hub.repo_files(repo_id)
    assert set(remote) == expected | {".gitattributes"}  # the Hub writes that one at creation
    assert remote["labels.json"] == (model_dir / "config.json").read_bytes()
    assert not any(TEST_TOKEN.encode() in data for data in remote.values())


@pytest.mark.parametrize("command", ["push", "push-dataset"])
def test_a_link_to_a_file_outside_the_folder_refuses_the_push(
    command: str, hub: HubServer, model_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    folder = model_dir
    if command == "push-dataset":
        folder = tmp_path / "koin"
        build_prepared_dataset(folder)
    (folder / "passwd").symlink_to(secret)
    before = snapshot(folder)

    result = koin([command, str(folder), "--repo_id", f"{TEST_USER}/x"], hub.client_env(tmp_path))

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"koin {command}: error: {folder / 'passwd'} is a symbolic link to {secret}, outside "
        f"{folder}: refusing to publish (replace the link by a copy of the file if it belongs "
        "in the repo)"
    ]
    assert hub.state.repos == {} and hub.state.requests == []  # refused before any network call
    assert snapshot(folder) == before


def test_dry_run_lists_every_file_with_its_size_and_uploads_nothing(
    hub: HubServer, model_dir: Path, tmp_path: Path
) -> None:
    add_unpublishable_files(model_dir, tmp_path)
    before = snapshot(model_dir)
    repo_id = f"{TEST_USER}/koin-dry"
    env = hub.client_env(tmp_path / "home", token=None)  # a dry run needs no token
    env["HF_TOKEN"] = TEST_TOKEN  # ... but the one in use is still looked for in the files

    result = koin(["push", str(model_dir), "--repo_id", repo_id, "--dry_run"], env)

    assert result.returncode == 0, result.stderr
    assert hub.state.repos == {} and hub.state.requests == []
    assert snapshot(model_dir) == before  # not even the card is written
    card = render_model_card(model_dir, repo_id=repo_id).encode()
    left_out = {"hf_token.txt", "credentials.json", "token", "id_rsa", ".huggingface/token",
                "notes.md", "checkpoint-2/optimizer.pt"}  # fmt: skip
    files = {name: len(data) for name, data in before.items() if name not in left_out}
    files["README.md"] = len(card)  # rendered in memory, as the real push would upload it
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Dry run, nothing uploaded: a push of {model_dir} to {repo_id} would upload "
        f"{len(files)} files ({sum(files.values()):,} bytes):"
    )
    assert lines[1 : len(files) + 1] == [
        f"  {name} ({size:,} bytes{', generated by koin-hf' if name == 'README.md' else ''})"
        for name, size in sorted(files.items())
    ]
    assert lines[len(files) + 1 :] == EXCLUDED_LINES


def test_dataset_dry_run_and_push_leave_out_the_same_files(hub: HubServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "koin"
    build_prepared_dataset(data_dir)
    (data_dir / ".env").write_text(f"HF_TOKEN={TEST_TOKEN}\n")
    (data_dir / "log.txt").write_text(f"token={TEST_TOKEN}\n")
    env = hub.client_env(tmp_path / "home")
    repo_id = f"{TEST_USER}/koin-data"

    dry = koin(["push-dataset", str(data_dir), "--repo_id", repo_id, "--dry-run"], env)
    assert dry.returncode == 0 and hub.state.repos == {}, dry.stderr
    listed = [line.split(" (")[0].strip() for line in dry.stdout.splitlines()[1:]]
    excluded = ["  .env: credential-like name", "  log.txt: contains the Hub token in use"]
    assert dry.stdout.splitlines()[-3:] == ["Not uploaded (2):", *excluded]

    pushed = koin(["push-dataset", str(data_dir), "--repo_id", repo_id], env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.splitlines()[:3] == ["Not uploaded (2):", *excluded]
    remote = hub.repo_files(repo_id, repo_type="dataset")
    assert sorted(remote) == sorted([*listed[: listed.index("Not uploaded")], ".gitattributes"])
    assert not any(TEST_TOKEN.encode() in data for data in remote.values())
