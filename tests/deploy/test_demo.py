"""`koin demo` and `koin push --with-demo`: in a real headless Chromium, a photo uploaded to the
app gets the names and scores `koin predict` prints for the same file; the app.py a push writes
runs as a Space would run it, loading the model from the Hub.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import (
    chromium,
    demo_env,
    free_port,
    koin_demo_command,
    require_chromium,
    served,
    upload_and_read,
)
from PIL import Image
from rawkoin import CLASS_NAMES
from records import LORA_VIT_RUN

from koin_hf.cli import main
from koin_hf.deploy.demo import FACES_ELEMENT_ID, FaceResult, build_demo
from koin_hf.deploy.space import MARKER, default_requirement
from koin_hf.models.loading import load_model_and_processor

TEST_USER = "koin-tester"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT whose id2label holds real names (Hangul and quotes included)."""
    folder = tmp_path_factory.mktemp("demo") / "koin-vit-tiny"
    model, processor, _ = load_model_and_processor("vit-tiny", list(CLASS_NAMES), seed=0)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    LORA_VIT_RUN.save(folder)
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A half-transparent PNG: transformers' load_image puts it on black, koin-hf on white, so
    the scores only agree if the app decodes the uploaded file as `koin predict` does."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (90, 70, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((90, 70)) > 0.5, 255, 0)
    path = tmp_path_factory.mktemp("photo") / "upload.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def koin_predict(model: Path, image: Path) -> list[tuple[str, float]]:
    """What `koin predict` prints: (name, score) per rank."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["predict", str(model), str(image)]) == 0
    ranked = []
    for line in out.getvalue().splitlines()[1:]:
        _rank, rest = line.strip().split(". ", 1)
        name, score = rest.rsplit("  ", 1)
        ranked.append((name, float(score)))
    return ranked


def koin(args: list[str], env: dict) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "koin_hf.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def assert_same_ranking(shown: list[tuple[str, float]], printed: list[tuple[str, float]]) -> None:
    assert [name for name, _ in shown] == [name for name, _ in printed]
    for (_, page_score), (_, cli_score) in zip(shown, printed, strict=True):
        assert page_score == pytest.approx(cli_score, abs=6e-5)  # printed with 4 decimals


@pytest.mark.slow
def test_the_browser_demo_names_what_koin_predict_names(model_dir: Path, photo: Path, tmp_path):
    require_chromium()
    printed = koin_predict(model_dir, photo)
    assert {name for name, _ in printed} == set(CLASS_NAMES)
    port = free_port()
    with served(koin_demo_command(model_dir, port), port, demo_env()) as url, chromium() as driver:
        assert url == f"http://127.0.0.1:{port}/"
        shown = upload_and_read(driver, url, photo, screenshot=tmp_path / "demo.png")
    assert_same_ranking(shown, printed)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_share_is_off_unless_asked() -> None:
    from koin_hf.cli import _command_parser

    parser, _ = _command_parser("demo")
    assert parser.parse_args(["m"]).share is False
    assert parser.parse_args(["m", "--share"]).share is True
    assert parser.parse_args(["m"]).host is None  # serve() then listens on 127.0.0.1


def test_face_mode_plugs_in_as_a_function(model_dir: Path, photo: Path) -> None:
    seen = []

    def faces(path: str) -> list[FaceResult]:
        seen.append(path)
        return [FaceResult((1, 2, 30, 40), [{"label": CLASS_NAMES[1], "score": 0.75}])]

    without = build_demo(model_dir)
    assert not [b for b in without.blocks.values() if b.elem_id == FACES_ELEMENT_ID]
    demo = build_demo(model_dir, faces=faces)
    annotated = [b for b in demo.blocks.values() if b.elem_id == FACES_ELEMENT_ID]
    assert len(annotated) == 1
    wired = [f for f in demo.fns.values() if annotated[0] in f.outputs]
    assert len(wired) == 1
    assert wired[0].fn(str(photo)) == (str(photo), [((1, 2, 30, 40), f"{CLASS_NAMES[1]} (0.75)")])
    assert seen == [str(photo)]


def test_koin_demo_faces_tab_shows_what_koin_recognize_finds(model_dir: Path, tmp_path) -> None:
    pytest.importorskip("ai_edge_litert")
    from koin_hf.cli import _command_parser
    from koin_hf.deploy.demo import face_function
    from koin_hf.evaluation.recognize import recognize
    from koin_hf.synthetic.writer import iter_photos

    parser, _ = _command_parser("demo")
    assert parser.parse_args(["m"]).faces is False
    assert (
        parser.parse_args(["m", "--faces", "--detector", "opencv-haar"]).detector == "opencv-haar"
    )
    group = next(iter(iter_photos(3, 7, {"group": 1}, image_size=(800, 560))))
    path = tmp_path / "group.jpg"
    group.image.save(path, quality=95)
    demo = build_demo(model_dir, faces=face_function(model_dir))
    (annotated,) = [b for b in demo.blocks.values() if b.elem_id == FACES_ELEMENT_ID]
    (wired,) = [f for f in demo.fns.values() if annotated in f.outputs]
    shown_path, boxes = wired.fn(str(path))
    (expected,) = recognize(model_dir, [path])
    assert shown_path == str(path) and len(boxes) == len(expected["faces"]) >= 2
    for (box, text), face in zip(boxes, expected["faces"], strict=True):
        assert box == tuple(round(v) for v in face["box"])
        best = face["predictions"][0]
        assert text == f"{best['label']} ({best['score']:.2f})"


@pytest.mark.slow
def test_push_with_demo_writes_a_space_app_that_runs_from_the_hub(
    hub, model_dir: Path, photo: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(model_dir, tmp_path / "model"))
    repo_id = f"{TEST_USER}/koin-vit-demo"
    env = hub.client_env(tmp_path / "home")

    dry = koin(["push", str(folder), "--repo_id", repo_id, "--with_demo", "--dry_run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "app.py (" in dry.stdout and "requirements.txt (" in dry.stdout
    assert not (folder / "app.py").exists()  # a dry run changes nothing

    pushed = koin(["push", str(folder), "--repo_id", repo_id, "--with_demo"], env)
    assert pushed.returncode == 0, pushed.stderr
    remote = hub.repo_files(repo_id)
    assert remote["app.py"] == (folder / "app.py").read_bytes()  # written once pushed
    assert remote["requirements.txt"].decode() == f"{MARKER}\n{default_requirement()}\n"
    assert f'"{repo_id}"' in remote["app.py"].decode()
    assert {"README.md", "config.json", "model.safetensors"} <= set(remote)

    # A Space holds app.py and requirements.txt only: the model comes from the Hub.
    space = tmp_path / "space"
    space.mkdir()
    (space / "app.py").write_bytes(remote["app.py"])
    port = free_port()
    space_env = hub.client_env(tmp_path / "space-home", token=None)
    space_env.update(GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_PORT=str(port))
    printed = koin_predict(model_dir, photo)
    require_chromium()
    with (
        served([sys.executable, "app.py"], port, space_env, cwd=space) as url,
        chromium() as driver,
    ):
        shown = upload_and_read(driver, url, photo)
    assert_same_ranking(shown, printed)

    # A user's own app.py is never replaced.
    (folder / "app.py").write_text("print('mine')\n")
    again = koin(["push", str(folder), "--repo_id", repo_id, "--with_demo"], env)
    assert again.returncode == 2 and "not written by koin-hf" in again.stderr
    assert (folder / "app.py").read_text() == "print('mine')\n"
