"""The KoIn dataset builder: the single place that knows the raw KoIn layout.

KoIn (arXiv 2310.09756) ships as folders of photos, one folder per celebrity id:

    [Dataset/]classes.csv                  optional, header "id,name"
    [Dataset/]normal_cases/{train,test}/<id>/*
    [Dataset/]hard_cases/[train/]test/<id>/*       faces under masks and hats
    [Dataset/]Group_cases/test/<id>/*              group photos (also "group_cases")

or as a .zip of that. datasets >= 4 no longer runs loading scripts, so this builder is imported
and run by `koin prepare`, which exports its output as parquet + YAML configs; that export is what
`load_dataset(DIR, "hard")` reads. Every config shares one `ClassLabel` built from the normal
train folders, so a model trained on `normal` is scored on `hard` and `group` without remapping.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from koin_hf.archive import extract_zip_cached
from koin_hf.errors import KoinError
from koin_hf.images import UnusableImage, decode_rgb, encode_jpeg, skip_reason_for_name

logger = logging.getLogger(__name__)

_CITATION = """\
@article{koin2023,
  title   = {KoIn: A Korean Celebrity Face Recognition Benchmark with Hard Cases},
  journal = {arXiv preprint arXiv:2310.09756},
  year    = {2023}
}
"""
_DESCRIPTION = (
    "KoIn: photos of Korean celebrities for face recognition, with normal photos, hard cases "
    "(masks, hats) and group photos."
)
_HOMEPAGE = "https://arxiv.org/abs/2310.09756"
_LICENSE = "academic research use only (see the KoIn authors' terms)"

# Folder names per case, lower-cased: the authors' archives vary in capitalisation.
CASE_FOLDERS: dict[str, tuple[str, ...]] = {
    "normal": ("normal_cases",),
    "hard": ("hard_cases",),
    "group": ("group_cases",),
}
CASE_SPLITS: dict[str, tuple[str, ...]] = {
    "normal": ("train", "test"),
    "hard": ("train", "test"),
    "group": ("test",),
}
CLASS_NAMES_FILE = "classes.csv"
DEFAULT_IMAGE_SIZE = 256


@dataclass
class KoinBuilderConfig(datasets.BuilderConfig):
    """One KoIn case (normal / hard / group).

    image_size: shorter side, in pixels, that stored images are reduced to (None keeps the
    original size). Models train at 224, so 256 keeps the detail they can use while making every
    later decode ~20x cheaper than a phone photo's.
    skip_log_dir: where skipped files are recorded (one JSON line each) for the prepare report.
    """

    image_size: int | None = DEFAULT_IMAGE_SIZE
    jpeg_quality: int = 95
    skip_log_dir: str | None = None
    extract_dir: str | None = None
    case: str = field(default="normal")


def _child_dir(parent: Path, names: tuple[str, ...]) -> Path | None:
    """The sub-folder of `parent` whose lower-cased name is in `names`, if any."""
    if not parent.is_dir():
        return None
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def find_raw_root(
    data_dir: str | os.PathLike, extract_dir: str | os.PathLike | None = None
) -> Path:
    """Resolve a KoIn folder or zip to the folder that holds `normal_cases`."""
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise KoinError(f"raw KoIn path {path} does not exist")
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise KoinError(f"{path} is a file but not a .zip archive of a KoIn folder")
        cache = (
            Path(extract_dir) if extract_dir else Path.home() / ".cache" / "koin_hf" / "extracted"
        )
        path = extract_zip_cached(path, cache)
    candidates = [path] + [child for child in sorted(path.iterdir()) if child.is_dir()]
    for candidate in candidates:  # the root itself, or one wrapping folder such as Dataset/
        if _child_dir(candidate, CASE_FOLDERS["normal"]) is not None:
            return candidate
    raise KoinError(f"no normal_cases folder found in {Path(data_dir)} (nor in a folder inside it)")


def read_class_names(root: Path, class_ids: list[str]) -> list[str]:
    """Label names in class-id order: from classes.csv (id,name) when present, else the ids."""
    mapping_file = root / CLASS_NAMES_FILE
    if not mapping_file.is_file():
        return list(class_ids)
    with open(mapping_file, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"id", "name"} <= set(reader.fieldnames):
            raise KoinError(f"{mapping_file} must have a header line 'id,name'")
        mapping = {row["id"].strip(): (row["name"] or "").strip() for row in reader}
    missing = [class_id for class_id in class_ids if not mapping.get(class_id)]
    if missing:
        raise KoinError(f"{mapping_file} has no name for class folder(s) {', '.join(missing[:10])}")
    names = [mapping[class_id] for class_id in class_ids]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KoinError(f"{mapping_file} gives the same name to several classes: {duplicates[:5]}")
    return names


def list_class_ids(root: Path) -> list[str]:
    """The class ids: the folders of normal_cases/train, sorted."""
    normal = _child_dir(root, CASE_FOLDERS["normal"])
    train = _child_dir(normal, ("train",)) if normal else None
    if train is None:
        raise KoinError(f"{root / 'normal_cases' / 'train'} is missing: it defines the classes")
    ids = sorted(child.name for child in train.iterdir() if child.is_dir())
    if not ids:
        raise KoinError(f"{train} has no class folders")
    return ids


def case_split_dirs(root: Path, case: str) -> dict[str, Path]:
    """The split folders present for one case, e.g. {"test": .../hard_cases/test}."""
    case_dir = _child_dir(root, CASE_FOLDERS[case])
    if case_dir is None:
        return {}
    splits = {}
    for split in CASE_SPLITS[case]:
        split_dir = _child_dir(case_dir, (split,))
        if split_dir is not None:
            splits[split] = split_dir
    return splits


class Koin(datasets.GeneratorBasedBuilder):
    """KoIn Korean celebrity faces: `normal`, `hard` and `group` configurations."""

    BUILDER_CONFIG_CLASS = KoinBuilderConfig
    BUILDER_CONFIGS = [
        KoinBuilderConfig(
            name="normal", case="normal", description="Normal photos: train and test."
        ),
        KoinBuilderConfig(name="hard", case="hard", description="Hard cases: masks and hats."),
        KoinBuilderConfig(name="group", case="group", description="Group photos: test only."),
    ]
    DEFAULT_CONFIG_NAME = "normal"

    @property
    def raw_root(self) -> Path:
        if not self.config.data_dir:
            raise KoinError("the KoIn builder needs data_dir: a raw KoIn folder or .zip")
        if not hasattr(self, "_raw_root"):
            self._raw_root = find_raw_root(self.config.data_dir, self.config.extract_dir)
        return self._raw_root

    def class_ids(self) -> list[str]:
        return list_class_ids(self.raw_root)

    def _info(self) -> datasets.DatasetInfo:
        # _info runs inside DatasetBuilder.__init__, before data_dir is known for some callers;
        # features are then completed here once it is.
        features = None
        if self.config.data_dir:
            ids = self.class_ids()
            features = datasets.Features(
                {
                    "image": datasets.Image(),
                    "label": datasets.ClassLabel(names=read_class_names(self.raw_root, ids)),
                    "image_id": datasets.Value("string"),
                }
            )
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=features,
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        split_dirs = case_split_dirs(self.raw_root, self.config.case)
        if not split_dirs:
            raise KoinError(f"no {self.config.case} cases found in {self.raw_root}")
        known = set(self.class_ids())
        generators = []
        for split, split_dir in split_dirs.items():
            files = self._list_split(split_dir, known)
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"files": files}))
        return generators

    def _list_split(self, split_dir: Path, known: set[str]) -> list[tuple[str, str]]:
        """(relative path, class id) of every candidate image; name-level skips are logged."""
        files = []
        for entry in sorted(split_dir.iterdir()):
            if not entry.is_dir():
                self._skip(entry, "not inside a class folder")
                continue
            if entry.name not in known:
                raise KoinError(
                    f"class folder {entry} is not among the normal_cases/train classes; "
                    "every hard/group class needs training images"
                )
            members = sorted(p for p in entry.rglob("*") if not p.is_dir())
            if not members:
                logger.warning("empty class folder: %s", entry)
                self._note("empty class folder", entry)
            for member in members:
                reason = skip_reason_for_name(member)
                if reason:
                    self._skip(member, reason)
                else:
                    files.append((member.relative_to(self.raw_root).as_posix(), entry.name))
        return files

    def _generate_examples(self, files: list[tuple[str, str]]) -> Iterator[tuple[str, dict]]:
        label_of = {class_id: index for index, class_id in enumerate(self.class_ids())}
        for relative, class_id in files:
            try:
                image = decode_rgb(self.raw_root / relative, self.config.image_size)
            except UnusableImage as err:
                self._skip(self.raw_root / relative, str(err))
                continue
            image_bytes = encode_jpeg(image, self.config.jpeg_quality)
            yield (
                relative,
                {
                    "image": {"bytes": image_bytes, "path": None},
                    "label": label_of[class_id],
                    "image_id": relative,
                },
            )

    def _record(self, kind: str, path: Path, reason: str) -> None:
        if not self.config.skip_log_dir:
            return
        log = Path(self.config.skip_log_dir) / f"{kind}-{os.getpid()}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"path": str(path), "reason": reason}) + "\n")

    def _skip(self, path: Path, reason: str) -> None:
        logger.info("skipping %s: %s", path, reason)
        self._record("skipped", path, reason)

    def _note(self, reason: str, path: Path) -> None:
        self._record("warnings", path, reason)
