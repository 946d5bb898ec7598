"""The embedded synthetic KoIn: layout, determinism, speed, no shortcuts, and that it is learnable.

The "is it a fair stand-in" tests are the point of this file: a label must be recoverable from
the face and not from the background or global image statistics, a tiny CNN must learn the
identities from the written files, and hard cases (masks, hats) must score clearly lower.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from koin_hf.cli import main
from koin_hf.errors import KoinError
from koin_hf.synthetic.contact_sheet import contact_sheet
from koin_hf.synthetic.identity import class_names
from koin_hf.synthetic.scene import PHONE_SIZE, PhotoJob, SyntheticPhoto, render_photo
from koin_hf.synthetic.writer import generate_synthetic_koin, iter_photos

TINY = {"train_per_class": 2, "test_per_class": 1, "hard_per_class": 1, "group_per_class": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- layout and API


@pytest.fixture(scope="module")
def learn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset on disk: 8 identities, 30 train / 10 test / 10 hard photos each."""
    out = tmp_path_factory.mktemp("synth") / "koin"
    return generate_synthetic_koin(
        out,
        num_classes=8,
        seed=0,
        train_per_class=30,
        test_per_class=10,
        hard_per_class=10,
        group_per_class=2,
        progress=False,
    )


def test_writes_the_raw_koin_layout_with_counts_and_classes_csv(learn_dir: Path):
    with open(learn_dir / "classes.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "name"]
    assert [r[0] for r in rows[1:]] == [f"{i:04d}" for i in range(8)]
    names = [r[1] for r in rows[1:]]
    assert len(set(names)) == 8 and all(
        " " in n and n.replace(" ", "").replace("-", "").isalpha() for n in names
    )
    expected = {
        "normal_cases/train": 30,
        "normal_cases/test": 10,
        "hard_cases/test": 10,
        "Group_cases/test": 2,
    }
    for folder, count in expected.items():
        class_dirs = sorted(p.name for p in (learn_dir / folder).iterdir())
        assert class_dirs == [f"{i:04d}" for i in range(8)], folder
        for class_dir in class_dirs:
            files = sorted((learn_dir / folder / class_dir).iterdir())
            assert len(files) == count and all(f.suffix == ".jpg" for f in files)
    top = sorted(p.name for p in learn_dir.iterdir())
    top_expected = ["Group_cases", "SYNTHETIC.json", "classes.csv", "faces.jsonl", "hard_cases"]
    assert top == [*top_expected, "normal_cases"]
    # Real JPEGs whose sizes vary per photo (portrait singles, landscape groups).
    sizes = set()
    for path in sorted((learn_dir / "normal_cases/train/0000").iterdir())[:10]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes.add(image.size)
            assert 224 <= image.width <= 288 and image.height > image.width
    assert len(sizes) > 5
    with Image.open(next((learn_dir / "Group_cases/test/0003").iterdir())) as group:
        assert group.width > group.height


def test_same_seed_same_bytes_whatever_the_thread_count(tmp_path: Path):
    a = generate_synthetic_koin(
        tmp_path / "a", num_classes=3, seed=5, workers=1, progress=False, **TINY
    )
    b = generate_synthetic_koin(
        tmp_path / "b", num_classes=3, seed=5, workers=3, progress=False, **TINY
    )
    c = generate_synthetic_koin(
        tmp_path / "c", num_classes=3, seed=6, workers=1, progress=False, **TINY
    )
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert len(files_a) == 3 + 3 * 5  # classes.csv, SYNTHETIC.json, faces.jsonl, 5 photos a class
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    assert all(files_a[k] != files_c[k] for k in files_a)  # another seed: other people, photos
    # The in-memory API draws the very same pixels as the files.
    photo = render_photo(PhotoJob(5, "hard", 2, 0))
    encoded = io.BytesIO()
    photo.image.save(encoded, "JPEG", quality=90)
    assert encoded.getvalue() == files_a[photo.relpath]


def test_names_are_unique_readable_and_seeded():
    names = class_names(200, seed=0)
    assert len(set(names)) == 200
    assert class_names(5, seed=0) == names[:5]
    assert class_names(5, seed=1) != names[:5]


def test_refuses_non_empty_output_and_bad_arguments(tmp_path: Path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(KoinError, match="not empty"):
        generate_synthetic_koin(tmp_path / "taken", progress=False)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    for kwargs in (
        {"num_classes": 1},
        {"train_per_class": 0},
        {"hard_per_class": -1},
        {"image_size": "huge"},
        {"image_size": "10x10"},
        {"quality": 0},
    ):
        with pytest.raises(KoinError):
            generate_synthetic_koin(tmp_path / "new", progress=False, **kwargs)
    # An existing empty folder is fine; a zero count leaves its folder out.
    (tmp_path / "empty").mkdir()
    out = generate_synthetic_koin(
        tmp_path / "empty",
        num_classes=2,
        progress=False,
        train_per_class=1,
        test_per_class=1,
        hard_per_class=0,
        group_per_class=0,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "SYNTHETIC.json",
        "classes.csv",
        "faces.jsonl",
        "normal_cases",
    ]


def test_image_size_options():
    phone = render_photo(PhotoJob(0, "test", 1, 0, "phone")).image
    assert phone.size == PHONE_SIZE
    exact = render_photo(PhotoJob(0, "group", 1, 0, (300, 200))).image
    assert exact.size == (300, 200)


def test_generation_is_fast(tmp_path: Path):
    """Loose bound (the strict one belongs in a benchmark): 100 small photos in well under 20 s."""
    start = time.perf_counter()
    generate_synthetic_koin(
        tmp_path / "speed",
        num_classes=10,
        train_per_class=10,
        test_per_class=0,
        hard_per_class=0,
        group_per_class=0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    print(f"\n100 photos in {seconds:.1f} s")
    assert seconds < 20


def test_cli_help_and_run(tmp_path: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--help"])
    assert exit_info.value.code == 0
    assert "--hard-per-class" in capsys.readouterr().out
    out = tmp_path / "cli"
    args = [
        "synth",
        str(out),
        "--num-classes",
        "2",
        "--train-per-class",
        "1",
        "--test-per-class",
        "1",
        "--hard-per-class",
        "1",
        "--group-per-class",
        "1",
        "--seed",
        "3",
        "--quiet",
    ]
    assert main(args) == 0
    assert len(list(out.rglob("*.jpg"))) == 8
    assert main(args) == 2  # now non-empty: one-line error, no traceback
    assert "not empty" in capsys.readouterr().err


def test_contact_sheet(tmp_path: Path):
    path = contact_sheet(
        tmp_path / "sheet.png", num_identities=2, normal_per_row=2, hard_per_row=1, thumb_height=60
    )
    with Image.open(path) as sheet:
        assert sheet.format == "PNG" and sheet.height > 2 * 60


# --------------------------------------------------------------------------- no shortcuts


def _nearest_centroid(x_train, y_train, x_test, y_test) -> float:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(int(y_train.max()) + 1)])
    predicted = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((predicted == y_test).mean())


def _logistic_regression(x_train, y_train, x_test, y_test) -> float:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xs = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    ys = torch.tensor(y_train)
    torch.manual_seed(0)
    linear = torch.nn.Linear(xs.shape[1], int(ys.max()) + 1)
    optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=200)

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(xs), ys) + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        predicted = linear(torch.tensor((x_test - mean) / std, dtype=torch.float32)).argmax(1)
    return float((predicted.numpy() == y_test).mean())


def _views(photo: SyntheticPhoto) -> dict[str, np.ndarray]:
    """Three views of one photo: global statistics, the four corners, and the face crop."""
    image = photo.image
    width, height = image.size
    pixels = np.asarray(image, np.float32) / 255
    stats = np.concatenate([pixels.mean((0, 1)), pixels.std((0, 1)), [width / 256, height / 320]])
    cw, ch = width // 8, height // 8
    corners = [
        (0, 0, cw, ch),
        (width - cw, 0, width, ch),
        (0, height - ch, cw, height),
        (width - cw, height - ch, width, height),
    ]
    corner = np.concatenate(
        [np.asarray(image.crop(b).resize((4, 4)), np.float32).ravel() / 255 for b in corners]
    )
    face = np.asarray(image.crop(photo.face_box).resize((12, 12)), np.float32).ravel() / 255
    return {"global statistics": stats, "corners": corner, "face": face}


@pytest.mark.slow
def test_identity_lives_in_the_face_not_in_background_or_image_statistics():
    num_classes, chance = 10, 0.1
    train = [_views(p) for p in iter_photos(num_classes, seed=0, counts={"train": 30})]
    test = [_views(p) for p in iter_photos(num_classes, seed=0, counts={"test": 20})]
    y_train = np.repeat(np.arange(num_classes), 30)
    y_test = np.repeat(np.arange(num_classes), 20)
    accuracy = {}
    for view in ("global statistics", "corners", "face"):
        x_train = np.stack([v[view] for v in train])
        x_test = np.stack([v[view] for v in test])
        accuracy[view] = max(
            _nearest_centroid(x_train, y_train, x_test, y_test),
            _logistic_regression(x_train, y_train, x_test, y_test),
        )
    print("\nbest of nearest-centroid / logistic regression:", accuracy)
    # 200 test photos: one standard error at chance is 2 points.
    assert accuracy["global statistics"] <= chance + 0.12
    assert accuracy["corners"] <= chance + 0.12
    assert accuracy["face"] >= chance + 0.5


# --------------------------------------------------------------------------- learnability


def _load_folder(folder: Path, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in sorted(folder.glob("*/*.jpg")):
        with Image.open(path) as image:
            image.draft("RGB", (size * 2, size * 2))  # JPEG decodes at reduced size: faster
            pixels = np.asarray(
                image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32
            )
        images.append(pixels / 255)
        labels.append(int(path.parent.name))
    x = torch.tensor(np.stack(images)).permute(0, 3, 1, 2)
    return (x - 0.5) / 0.25, torch.tensor(labels)


def _tiny_cnn(num_classes: int) -> torch.nn.Module:
    def block(cin: int, cout: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )

    return torch.nn.Sequential(
        block(3, 16),
        block(16, 32),
        block(32, 48),
        block(48, 64),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(64, num_classes),
    )


@pytest.mark.slow
def test_tiny_cnn_learns_identities_and_hard_cases_score_lower(learn_dir: Path):
    x_train, y_train = _load_folder(learn_dir / "normal_cases/train")
    eval_sets = {
        "normal": _load_folder(learn_dir / "normal_cases/test"),
        "hard": _load_folder(learn_dir / "hard_cases/test"),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared 2-core machine
    try:
        torch.manual_seed(0)
        shifts = np.random.default_rng(0)
        model = _tiny_cnn(8)
        epochs, batch = 20, 32
        optimiser = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-3)
        steps = epochs * ((len(x_train) + batch - 1) // batch)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=steps)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(x_train))
            for start in range(0, len(x_train), batch):
                index = order[start : start + batch]
                dy, dx = (int(v) for v in shifts.integers(-6, 7, 2))  # translation augmentation
                inputs = torch.roll(x_train[index], (dy, dx), (2, 3))
                loss = torch.nn.functional.cross_entropy(model(inputs), y_train[index])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        model.eval()
        with torch.no_grad():
            accuracy = {
                name: float((model(x).argmax(1) == y).float().mean())
                for name, (x, y) in eval_sets.items()
            }
    finally:
        torch.set_num_threads(threads)
    print("\ntiny CNN top-1:", accuracy)
    chance = 1 / 8
    assert accuracy["normal"] >= 3 * chance
    assert accuracy["hard"] <= accuracy["normal"] - 0.15
