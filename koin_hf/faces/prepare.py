"""`koin prepare RAW OUT --faces`: face crops as configs of the same dataset.

Beside `normal`, `hard` and `group` (whole photos, unchanged), the prepared folder gets
`normal-faces` (train/test), `hard-faces` (test[, train]) and `group-faces` (test): one row per
face, an upright crop (koin_hf.faces.alignment) `image_size` pixels square cut from the
full-resolution decode, with the same ClassLabel as the whole-photo configs and

    image_id    the source photo (as in the whole-photo configs), so rows join back to it
    face_index  the face's place among the photo's faces, left to right
    box         [x0, y0, x1, y1] in the source photo's pixels
    score       the detector's confidence
    labelled    is this the labelled person? True/False when koin synth's faces.jsonl says so,
                None (unknown) for real photos

Which faces become rows:
- normal and hard photos are portraits of the labelled person: one row, the face that carries
  the label. With faces.jsonl it is the detected face that overlaps the recorded labelled face
  most (IoU >= 0.3); without it, the largest face (a portrait's subject is its largest face).
- group photos: every face found, each with the photo's label and its `face_index`; the label
  belongs to one of them (`labelled` says which when known). Scoring "is the person among the
  faces" needs them all (koin evaluate --faces); training should not use group-faces as is.

A photo where no face is found (or, with records, not the labelled one) gets no face row: it
stays in the whole-photo configs, and prepare_report.json lists it under `faces.no_face`.
Every photo is decoded once here at reduced size (shorter side >= 512, JPEG DCT scaling) for the
detector; a crop that needs more pixels than that copy has is cut from a full-resolution decode
(see `_photo_rows`). Boxes are in the file's full-size pixels.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import datasets
from PIL import ExifTags, Image

from koin_hf.data.images import UnusableImage, decode_rgb, encode_jpeg
from koin_hf.data.prepare import MAX_SHARD_BYTES, ExtraConfigs
from koin_hf.dataset_script.koin import (
    DEFAULT_IMAGE_SIZE,
    UNKNOWN_LABEL_ID,
    RawLocation,
    check_layout,
    printable,
)
from koin_hf.faces.alignment import DEFAULT_MARGIN, align_face, crop_geometry
from koin_hf.faces.configs import FACE_SUFFIX
from koin_hf.faces.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MAX_SIDE,
    FACES_RECORD_FILE,
    Face,
    FaceDetector,
    RecordedDetector,
    check_max_side,
    detect_reduced,
    faces_from_record,
    get_detector,
    iou,
    read_face_records,
)
from koin_hf.faces.portrait import largest_face

# IoU at which a detected face is the recorded one (boxes differ in where a face "ends").
MATCH_IOU = 0.3
# Photos are decoded for the detector with their shorter side at least this (JPEG DCT scaling).
DETECT_SHORTER_SIDE = 512


def face_features(class_names: list[str]) -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=class_names),
            "image_id": datasets.Value("string"),
            "face_index": datasets.Value("int32"),
            "box": datasets.List(datasets.Value("float32"), length=4),
            "score": datasets.Value("float32"),
            "labelled": datasets.Value("bool"),
        }
    )


def _records(location: RawLocation) -> dict[str, dict] | None:
    for folder in (location.root, location.top):
        path = Path(folder) / FACES_RECORD_FILE
        if path.is_file():
            return read_face_records(path)
    return None


def _scale_to_full(path: Path, photo: Image.Image) -> tuple[float, float]:
    """How many of the file's (upright) pixels one pixel of the reduced decode stands for."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    except Exception:  # the decode worked; an odd header only costs the exact scale
        return 1.0, 1.0
    if orientation in (5, 6, 7, 8):  # decode_rgb turned it upright: sides swap
        width, height = height, width
    sx, sy = width / photo.width, height / photo.height
    if abs(sx - sy) > 0.05 * max(sx, sy):  # not the same picture's geometry (malformed EXIF)
        return 1.0, 1.0
    return sx, sy


def _labelled_index(faces: list[Face], record: dict | None) -> int | None:
    """Which detected face is the recorded labelled one (None: none overlaps it enough)."""
    if record is None or not faces:
        return None
    truth = faces_from_record(record)[record["labelled"]].box
    overlaps = [iou(face.box, truth) for face in faces]
    best = max(range(len(faces)), key=overlaps.__getitem__)
    return best if overlaps[best] >= MATCH_IOU else None


def _photo_rows(
    path: Path,
    image_id: str,
    label: int,
    kind: str,
    detector: FaceDetector,
    record: dict | None,
    size: int,
    max_side: int,
    margin: float,
    max_megapixels: float | None,
) -> tuple[list[dict], str | None]:
    """The face rows of one photo, or a reason it has none.

    The photo is decoded once at reduced size (JPEG DCT scaling: shorter side >= 512, several
    times cheaper than a full decode of a phone photo); the detector works on that. A face whose
    crop would have fewer pixels there than the crop's own size is cut from a full-resolution
    decode instead (made at most once per photo), so no crop is ever upsampled from a reduced
    copy when the file has more detail. Boxes are reported in the file's full-size pixels.
    """
    try:
        photo = decode_rgb(path, DETECT_SHORTER_SIDE, slack=2.0, max_megapixels=max_megapixels)
        sx, sy = _scale_to_full(path, photo)
    except UnusableImage as err:
        return [], f"not decoded: {err}"  # the whole-photo configs list it as skipped too
    faces = sorted(
        detect_reduced(detector, photo, max_side, image_id=image_id), key=lambda f: f.box[0]
    )
    if not faces:
        return [], "no face found"
    # the records, and the boxes reported, are in the file's full-size pixels
    labelled = _labelled_index([face.scaled(sx, sy) for face in faces], record)
    if kind == "group":
        keep = list(range(len(faces)))
    elif record is not None:
        if labelled is None:
            return [], "the labelled face was not found"
        keep = [labelled]
    else:
        keep = [faces.index(largest_face(faces))]  # a real portrait: the largest face
    rows = []
    full_photo = None
    for index in keep:
        face = faces[index]
        if crop_geometry(face, margin)[2] < size and (sx > 1.001 or sy > 1.001):
            if full_photo is None:
                full_photo = decode_rgb(path, max_megapixels=max_megapixels)
            crop = align_face(full_photo, face.scaled(sx, sy), size, margin)
        else:
            crop = align_face(photo, face, size, margin)
        face = face.scaled(sx, sy)
        rows.append(
            {
                "image": {"bytes": encode_jpeg(crop, 95), "path": None},
                "label": label,
                "image_id": image_id,
                "face_index": index,
                "box": [float(v) for v in face.box],
                "score": float(face.score),
                "labelled": None if record is None else index == labelled,
            }
        )
    return rows, None


def make_face_configs(
    *,
    detector: str = DEFAULT_DETECTOR,
    image_size: int | None = DEFAULT_IMAGE_SIZE,
    max_side: int = DEFAULT_MAX_SIDE,
    margin: float = DEFAULT_MARGIN,
    max_megapixels: float | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ExtraConfigs:
    """The `extra_configs` hook of koin_hf.data.prepare.prepare_koin that adds the face configs."""
    check_max_side(max_side)
    finder = get_detector(detector)  # an unknown name or a missing extra fails before any work
    size = image_size or DEFAULT_IMAGE_SIZE

    def build(
        location: RawLocation, staging: Path, report: dict, work: Path
    ) -> dict[str, datasets.DatasetInfo]:
        records = _records(location)
        used = finder
        if isinstance(finder, RecordedDetector):
            if records is None:
                from koin_hf.errors import KoinError

                raise KoinError(
                    f"--face_detector recorded reads {FACES_RECORD_FILE} (written by koin synth), "
                    f"and {location.top} has none; choose a real detector"
                )
            used = RecordedDetector(records)
        root = location.root
        class_ids = report["class_ids"]
        label_of = {class_id: index for index, class_id in enumerate(class_ids)}
        features = face_features(report["class_names"])
        # People outside the classes (unknown_cases/) get the "no label" value, as in `unknown`.
        jobs = [
            (case, split, relative, label_of.get(class_id, UNKNOWN_LABEL_ID))
            for case, splits in check_layout(root).items()
            for split, listing in splits.items()
            for relative, class_id in listing.files
        ]
        from tqdm.auto import tqdm

        started = time.perf_counter()
        rows: dict[tuple[str, str], list[dict]] = {}
        no_face: list[dict[str, str]] = []
        counts: dict[str, dict[str, dict[str, int]]] = {}

        def one(job):
            case, _split, relative, label = job
            image_id = printable(relative)
            record = records.get(image_id) if records else None
            return _photo_rows(
                root / relative,
                image_id,
                label,
                case,
                used,
                record,
                size,
                max_side,
                margin,
                max_megapixels,
            )

        threads = workers or max(1, min(os.cpu_count() or 1, 4))
        bar = tqdm(total=len(jobs), desc="faces", unit="photo", disable=not progress)
        with ThreadPoolExecutor(threads) as pool:
            for job, (photo_rows, reason) in zip(jobs, pool.map(one, jobs), strict=True):
                case, split, relative, _ = job
                tally = counts.setdefault(f"{case}{FACE_SUFFIX}", {}).setdefault(
                    split, {"photos": 0, "faces": 0, "no_face": 0}
                )
                tally["photos"] += 1
                tally["faces"] += len(photo_rows)
                if reason:
                    tally["no_face"] += 1
                    no_face.append({"path": printable(relative), "reason": reason})
                rows.setdefault((case, split), []).extend(photo_rows)
                bar.update()
        bar.close()
        seconds = time.perf_counter() - started
        infos: dict[str, datasets.DatasetInfo] = {}
        for (case, split), split_rows in rows.items():
            if not split_rows:
                continue
            name = f"{case}{FACE_SUFFIX}"
            (staging / name).mkdir(exist_ok=True)
            _write_shards(split_rows, features, staging / name, split)
            info = infos.setdefault(name, datasets.DatasetInfo(features=features))
            if info.splits is None:
                info.splits = datasets.SplitDict()
            info.splits.add(datasets.SplitInfo(name=split, num_examples=len(split_rows)))
        report["faces"] = {
            "detector": used.name,
            "max_side": max_side,
            "crop_size": size,
            "margin": margin,
            "records": FACES_RECORD_FILE if records is not None else None,
            "photos": len(jobs),
            "seconds": round(seconds, 2),
            "photos_per_second": round(len(jobs) / seconds, 2) if seconds > 0 else None,
            "counts": counts,
            "no_face": sorted(no_face, key=lambda r: r["path"]),
        }
        if no_face:
            report["notes"].append(
                f"faces: {len(no_face)} photo(s) without a usable face (kept in the whole-photo "
                "configs; listed under faces.no_face)"
            )
        return infos

    return build


def _write_shards(rows: list[dict], features: datasets.Features, folder: Path, split: str) -> None:
    """Parquet shards named as push_to_hub names them, each under MAX_SHARD_BYTES."""

    dataset = datasets.Dataset.from_list(rows, features=features)
    shards = max(1, math.ceil(dataset.data.nbytes / MAX_SHARD_BYTES))
    for index in range(shards):
        part = dataset.shard(shards, index, contiguous=True)
        part.to_parquet(str(folder / f"{split}-{index:05d}-of-{shards:05d}.parquet"))
