"""`koin predict`: a file gets the pixels `koin prepare`, `koin evaluate` and training give it,
and a hostile file is one line and exit code 2, in flat memory.

The arrays compared are the ones the model receives: a forward pre-hook on the real model's
patch-embedding convolution records them while the real `predict()` runs.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from peak_memory import run_measured
from PIL import Image
from rawkoin import CLASS_NAMES, bomb_png, jpeg_claiming, make_raw_koin
from transformers import pipeline
from transformers.image_utils import load_image

from koin_hf.cli import main
from koin_hf.data import images
from koin_hf.data.prepare import prepare_koin
from koin_hf.data.transforms import make_eval_transform
from koin_hf.dataset_script import koin as koin_builder
from koin_hf.errors import KoinError
from koin_hf.evaluation.predict import predict
from koin_hf.evaluation.scoring import preprocess_images
from koin_hf.models.loading import load_model_and_processor


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vit")
    model, processor, _ = load_model_and_processor("vit-tiny", list(CLASS_NAMES), seed=0)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def classifier(model_dir):
    return pipeline("image-classification", model=str(model_dir), device="cpu")


def _gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    return x * 0.7 + y * 0.3


def _tricky_files(folder: Path) -> dict[str, Path]:
    """The four kinds transformers' load_image gets wrong or decodes differently, each larger
    than the 256 pixels decoding stops at, so the reduction is exercised too."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = 300, 280
    ramp = _gradient(width, height)
    files = {}

    deep = (ramp * 60000 + 2000).astype(np.uint16)  # 16-bit greyscale: load_image -> white
    files["deep16.png"] = deep

    rgba = np.zeros((height, width, 4), dtype=np.uint8)  # transparent: load_image -> black
    rgba[..., 0] = (ramp * 255).astype(np.uint8)
    rgba[..., 2] = 180
    rgba[..., 3] = np.where(ramp > 0.4, 255, 0)
    rgba[:40, :40, 3] = 128  # and a half-transparent corner
    files["rgba.png"] = Image.fromarray(rgba, "RGBA")

    cmyk = Image.fromarray((ramp * 255).astype(np.uint8)).resize((600, 520)).convert("CMYK")
    files["cmyk.jpg"] = cmyk  # JPEG: reduced-size (draft) decoding applies

    palette = Image.fromarray((np.dstack([ramp, 1 - ramp, ramp]) * 255).astype(np.uint8))
    palette = palette.quantize(16)
    palette.putpixel((0, 0), 0)
    files["palette.png"] = palette  # index 0 transparent below: load_image -> that colour

    paths = {}
    for name, content in files.items():
        path = folder / name
        if isinstance(content, np.ndarray):
            Image.fromarray(content).save(path)
        elif name == "palette.png":
            content.save(path, transparency=0)
        elif name.endswith(".jpg"):
            content.save(path, quality=95)
        else:
            content.save(path)
        paths[name] = path
    assert Image.open(paths["deep16.png"]).mode == "I;16"
    assert Image.open(paths["cmyk.jpg"]).mode == "CMYK"
    assert "transparency" in Image.open(paths["palette.png"]).info
    return paths


@contextlib.contextmanager
def model_inputs() -> Iterator[list[torch.Tensor]]:
    """Every pixel tensor the model's patch embedding receives while the block runs."""
    seen: list[torch.Tensor] = []

    def record(module, args):
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3 and args:
            seen.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A real `koin prepare` run over the tricky files, with the images it encoded recorded."""
    base = tmp_path_factory.mktemp("raw")
    raw = make_raw_koin(base / "raw", per_split={"normal_cases/train": 1})
    files = _tricky_files(raw / "normal_cases" / "test" / "0000")
    encoded: dict[str, np.ndarray] = {}
    current: list[str] = []
    to_bytes, to_jpeg = koin_builder.image_bytes_for_dataset, images.encode_jpeg

    def spy_bytes(source, *args, **kwargs):
        current[:] = [Path(source).name]
        return to_bytes(source, *args, **kwargs)

    def spy_jpeg(image, quality=95):
        encoded[current[0]] = np.asarray(image).copy()
        return to_jpeg(image, quality)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(koin_builder, "image_bytes_for_dataset", spy_bytes)
        patch.setattr(images, "encode_jpeg", spy_jpeg)
        prepare_koin(raw, base / "koin", verbose=False)
    return files, encoded, base / "koin"


@pytest.fixture(scope="module")
def predicted(prepared, model_dir):
    files, _, _ = prepared
    with model_inputs() as seen:
        results = predict(model_dir, [str(p) for p in files.values()], device="cpu")
    assert len(results) == len(files) and len(seen) == len(files)
    return dict(zip(files, seen, strict=True))


@pytest.mark.parametrize("name", ["deep16.png", "rgba.png", "cmyk.jpg", "palette.png"])
def test_predict_gives_the_model_exactly_the_pixels_prepare_stores(
    prepared, predicted, classifier, name
):
    files, encoded, _ = prepared
    processor = classifier.image_processor
    prepare_view = processor(images=Image.fromarray(encoded[name]), return_tensors="pt")
    assert encoded[name].shape[:2] == ((256, 274) if name != "cmyk.jpg" else (256, 295))
    assert torch.equal(predicted[name], prepare_view["pixel_values"])
    # koin evaluate, on a dataset whose rows hold this file's bytes, and training's evaluation
    # transform: the same arrays, exactly.
    row = {"bytes": files[name].read_bytes(), "path": None}
    assert torch.equal(predicted[name], preprocess_images(processor, [row]))
    evaluated = make_eval_transform(processor)({"image": [row], "label": [0]})
    assert torch.equal(predicted[name], evaluated["pixel_values"])


def test_transformers_load_image_would_have_given_other_pixels(prepared, predicted, classifier):
    files, _, _ = prepared
    ours = {name: np.asarray(images.decode_rgb(path)) for name, path in files.items()}
    theirs = {name: np.asarray(load_image(str(path))) for name, path in files.items()}
    # 16-bit greyscale: load_image clips every value above 255 to white; ours keeps the ramp.
    assert (theirs["deep16.png"] == 255).all()
    assert ours["deep16.png"].min() == 2000 // 257 and ours["deep16.png"].max() == 62000 // 257
    # Transparent pixels: ours on white, load_image keeps whatever colour they happen to store.
    assert tuple(ours["rgba.png"][-1, 0]) == (255, 255, 255)
    assert tuple(theirs["rgba.png"][-1, 0]) == (76, 0, 180)
    assert tuple(ours["palette.png"][0, 0]) == (255, 255, 255)
    assert tuple(theirs["palette.png"][0, 0]) != (255, 255, 255)
    for name in ("deep16.png", "rgba.png", "palette.png"):
        image = load_image(str(files[name]))
        via_load_image = classifier.image_processor(images=image, return_tensors="pt")
        assert not torch.equal(predicted[name], via_load_image["pixel_values"]), name


def test_the_prepared_copy_differs_from_predict_only_by_jpeg_storage(
    prepared, predicted, classifier
):
    """The dataset stores the decoded pixels as JPEG (quality 95): koin evaluate on the prepared
    dataset sees them within JPEG's error, nowhere near load_image's white or black."""
    import datasets

    files, _, folder = prepared
    test = datasets.load_dataset(str(folder), "normal", split="test")
    test = test.cast_column("image", datasets.Image(decode=False))
    stored = {Path(i).name: row for i, row in zip(test["image_id"], test["image"], strict=True)}
    processor = classifier.image_processor
    for name in files:
        evaluated = preprocess_images(processor, [stored[name]])
        error = (evaluated - predicted[name]).abs().mean().item()
        assert error < 0.02, (name, error)


def test_predict_from_a_url_decodes_the_same_way(prepared, predicted, model_dir):
    files, _, _ = prepared
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(files["deep16.png"].parent)
    )
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/deep16.png"
        with model_inputs() as seen:
            predict(model_dir, [url], device="cpu")
        assert torch.equal(seen[0], predicted["deep16.png"])
        with pytest.raises(KoinError, match="cannot download image .*missing.png"):
            predict(model_dir, [url.replace("deep16", "missing")], device="cpu")
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# Hostile files: one line, exit code 2, flat memory


def _koin_predict(*argv: str) -> tuple[int, str, float]:
    return run_measured([sys.executable, "-m", "koin_hf.cli", "predict", *argv])


def test_a_bomb_png_is_refused_in_one_line_and_flat_memory(tmp_path, model_dir):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(20_000, 20_000))
    code, err, peak_mb = _koin_predict(str(model_dir), str(bomb))
    assert code == 2
    assert err == (
        f"koin predict: error: cannot read image '{bomb}': image too large: 400,000,000 pixels "
        "(400.0 megapixels), over the budget of 64 megapixels (raise it with --max_megapixels "
        "or $KOIN_MAX_MEGAPIXELS)\n"
    )
    assert peak_mb < 500, f"peak RSS {peak_mb:.0f} MB"


@pytest.mark.parametrize(
    ("content", "flags", "expected"),
    [
        (jpeg_claiming(65_000, 65_000), [], "image too large: 4,225,000,000 pixels"),
        (jpeg_claiming(9_000, 8_000), [], "image too large: 9000x8000 pixels (72.0 megapixels)"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, [], "not a readable image"),
        (b"", [], "empty file (0 bytes)"),
        (None, ["--max_megapixels", "0"], "--max_megapixels must be a positive number"),
        (None, ["--max_megapixels", "nan"], "--max_megapixels must be a positive number"),
    ],
)
def test_hostile_files_and_values_are_one_line(tmp_path, model_dir, content, flags, expected):
    path = tmp_path / "photo.jpg"
    if content is None:
        Image.new("RGB", (8, 8)).save(path)
    else:
        path.write_bytes(content)
    code, err, peak_mb = _koin_predict(str(model_dir), str(path), *flags)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("koin predict: error: "), err
    assert expected in err and "Traceback" not in err
    assert peak_mb < 500, f"peak RSS {peak_mb:.0f} MB"


def test_a_raised_budget_reaches_the_decoder(tmp_path, model_dir, capsys):
    path = tmp_path / "wide.png"
    Image.new("RGB", (120, 100), (200, 10, 10)).save(path)  # 0.012 MP
    assert main(["predict", str(model_dir), str(path), "--max_megapixels", "0.01"]) == 2
    assert "over the budget of 0.01 megapixels" in capsys.readouterr().err
    assert main(["predict", str(model_dir), str(path), "--max_megapixels", "0.02"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(path)


def test_predict_is_the_pipeline_on_an_image_decoded_by_koin_hf(prepared, classifier, model_dir):
    """What docs/EVALUATION.md tells Python users: decode with koin-hf, pass the PIL image."""
    from koin_hf.data.transforms import decode_for_model, model_decode_side

    files, _, _ = prepared
    image = decode_for_model(str(files["rgba.png"]), model_decode_side(classifier.image_processor))
    assert classifier(image, top_k=3) == predict(model_dir, [files["rgba.png"]], device="cpu")[0]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_koin_evaluate_refuses_an_image_over_the_budget_in_one_line(
    prepared, model_dir, tmp_path, capsys, workers
):
    _, _, folder = prepared
    argv = ["evaluate", str(model_dir), "--dataset", str(folder), "--configs", "normal"]
    argv += ["--output_dir", str(tmp_path / "report"), "--no_plots", "--num_workers", workers]
    assert main([*argv, "--max_megapixels", "0.05"]) == 2
    err = capsys.readouterr().err  # after progress bars: the one error line, no traceback
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        "koin evaluate: error: normal: image 'normal_cases/test/0000/cmyk.jpg' cannot be decoded: "
        "image too large: 295x256 pixels (0.1 megapixels), over the budget of 0.05 megapixels "
        "(raise it with --max_megapixels or $KOIN_MAX_MEGAPIXELS)"
    )
    assert main(argv) == 0  # the default budget (64 megapixels) takes them all
    assert "normal" in capsys.readouterr().out


def test_predict_prints_its_names_not_transformers_bars_or_notices(tmp_path):
    """A timm-wrapper model (the default family) makes transformers log a PIL-only notice and
    show a weights bar when it loads; koin predict's output is its names alone. Fresh processes:
    transformers logs the notice once per process."""
    import os
    import subprocess

    from koin_hf.models.loading import load_model_and_processor

    model, processor, _ = load_model_and_processor("lite0-tiny", ["Ann", "Bo"], seed=0)
    folder = tmp_path / "lite0"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    image = tmp_path / "face.png"
    Image.new("RGB", (40, 40), (200, 120, 90)).save(image)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env)

    plain = run("-c", f"from transformers import pipeline; pipeline('image-classification', "
                      f"model={str(folder)!r})")  # fmt: skip
    assert "Falling back to pil backend" in plain.stderr and "Loading weights" in plain.stderr
    koin = run("-m", "koin_hf.cli", "predict", str(folder), str(image))
    assert koin.returncode == 0, koin.stderr
    assert koin.stderr == "" and koin.stdout.splitlines()[0] == str(image)
