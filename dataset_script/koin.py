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
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from koin_hf.data.archive import extract_zip_cached
from koin_hf.data.images import (
    UnusableImage,
    file_problem,
    image_bytes_for_dataset,
    skip_reason_for_name,
)
from koin_hf.errors import KoinError
from koin_hf.hub.cards import KOIN_CITATION

logger = logging.getLogger(__name__)

# The same reference the cards write.
_CITATION = KOIN_CITATION + "\n"
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
    "unknown": ("unknown_cases",),
}
# The closed-set configurations (every image one of the classes), scored top-1/top-3.
CONFIG_NAMES: tuple[str, ...] = ("normal", "hard", "group")
# Photos of people who are NOT among the classes (open-set impostors): test split only, every
# label UNKNOWN_LABEL_ID (datasets' "no label" value of a ClassLabel), so the ClassLabel stays
# the one every config shares. The person is the class folder in image_id.
OPEN_SET_CONFIG = "unknown"
UNKNOWN_LABEL_ID = -1
# Every configuration, in the order prepare builds and reports them.
ALL_CONFIG_NAMES: tuple[str, ...] = (*CONFIG_NAMES, OPEN_SET_CONFIG)
CASE_SPLITS: dict[str, tuple[str, ...]] = {
    "normal": ("train", "test"),
    "hard": ("train", "test"),
    "group": ("test",),
    "unknown": ("test",),
}
CLASS_NAMES_FILE = "classes.csv"
DEFAULT_IMAGE_SIZE = 256


@dataclass
class KoinBuilderConfig(datasets.BuilderConfig):
    """One KoIn case (normal / hard / group).

    image_size: shorter side, in pixels, that stored images are reduced to (None keeps the
    original size). Models train at 224, so 256 keeps the detail they can use while making every
    later decode ~20x cheaper than a phone photo's.
    jpeg_quality: quality of re-encoded images (small upright RGB JPEGs are stored as they are).
    max_megapixels: images whose header declares more pixels are skipped with the reason, never
    decoded (None: $KOIN_MAX_MEGAPIXELS, else 64; see koin_hf.data.images.pixel_budget).
    skip_log_dir: where skipped files and warnings are recorded (JSON lines, one file per
    process, since decoding may run in num_proc workers) for the prepare report.
    extract_dir: where a zipped data_dir is extracted (default ~/.cache/koin_hf/extracted).
    """

    image_size: int | None = DEFAULT_IMAGE_SIZE
    jpeg_quality: int = 95
    max_megapixels: float | None = None
    skip_log_dir: str | None = None
    extract_dir: str | None = None
    case: str = field(default="normal")


# Folders that tools leave inside photo trees (macOS zips, Synology, Jupyter); never classes.
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})


def printable(text: str) -> str:
    """A file or folder name as valid Unicode: bytes that are not UTF-8 (e.g. cp949 names from a
    Windows zip, which Python keeps as surrogate escapes) become visible `\\xb1` escapes, so
    the name stays unique and traceable instead of crashing Arrow or JSON writers."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _is_system_folder(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def _child_dir(parent: Path | None, names: tuple[str, ...]) -> Path | None:
    """The sub-folder of `parent` whose lower-cased name is in `names`, if any."""
    if parent is None or not parent.is_dir():
        return None
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


@dataclass(frozen=True)
class RawLocation:
    """Where a raw KoIn tree lives: `top` is the folder given (or the extracted zip), `root` the
    folder holding normal_cases (`top` itself or one wrapping folder inside it, e.g. Dataset/)."""

    top: Path
    root: Path


def locate_raw(
    data_dir: str | os.PathLike, extract_dir: str | os.PathLike | None = None
) -> RawLocation:
    """Resolve a KoIn folder or .zip to its RawLocation; zips are extracted safely first."""
    given = Path(data_dir).expanduser()
    if not given.exists():
        raise KoinError(f"raw KoIn path {given} does not exist")
    top = given
    if given.is_file():
        if given.suffix.lower() != ".zip":
            raise KoinError(f"{given} is a file but not a .zip archive of a KoIn folder")
        cache = (
            Path(extract_dir) if extract_dir else Path.home() / ".cache" / "koin_hf" / "extracted"
        )
        top = extract_zip_cached(given, cache)
    if not top.is_dir():
        raise KoinError(f"raw KoIn path {given} is neither a folder nor a .zip archive")
    wrappers = [c for c in sorted(top.iterdir()) if c.is_dir() and not _is_system_folder(c.name)]
    for candidate in [top, *wrappers]:  # the folder itself, or one wrapping folder (Dataset/)
        if _child_dir(candidate, CASE_FOLDERS["normal"]) is not None:
            return RawLocation(top=top, root=candidate)
    raise KoinError(
        f"no normal_cases folder found in {given} (nor in a folder inside it); "
        "expected normal_cases/train/<class id>/ images"
    )


def find_raw_root(
    data_dir: str | os.PathLike, extract_dir: str | os.PathLike | None = None
) -> Path:
    """Resolve a KoIn folder or zip to the folder that holds `normal_cases`."""
    return locate_raw(data_dir, extract_dir).root


def find_class_names_file(location: RawLocation) -> Path | None:
    """classes.csv next to normal_cases, or at the top when the tree sits in a wrapping folder."""
    for folder in dict.fromkeys([location.root, location.top]):
        candidate = folder / CLASS_NAMES_FILE
        if candidate.is_file():
            return candidate
    return None


def _same_id(csv_id: str, class_ids: set[str]) -> str | None:
    """The class folder an id from classes.csv names. Spreadsheet programs turn "0007" into
    "7", so all-digit ids also match by number."""
    if csv_id in class_ids:
        return csv_id
    if csv_id.isdigit():
        matches = [c for c in class_ids if c.isdigit() and int(c) == int(csv_id)]
        if len(matches) == 1:
            return matches[0]
    return None


def _check_csv_row(mapping_file: Path, start: int, end: int, row: list[str]) -> None:
    """Refuse what would silently corrupt the label names: a quoted field that swallowed the
    following lines (an unclosed quote), a NUL byte or another control character."""
    for cell in row:
        if "\n" in cell or "\r" in cell:
            raise KoinError(
                f"{mapping_file} line {start}: a quoted field runs from here to line {end}; "
                "is a closing quote missing?"
            )
        for char in cell:
            if char == "\x00":
                raise KoinError(
                    f"{mapping_file} line {start} contains a NUL byte; "
                    "ids and names must be plain text"
                )
            if unicodedata.category(char) == "Cc":
                raise KoinError(
                    f"{mapping_file} line {start} contains the control character "
                    f"U+{ord(char):04X}; ids and names must be plain text"
                )


def _csv_rows(mapping_file: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of every non-blank row, each checked by _check_csv_row."""
    start = 1
    with open(mapping_file, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                _check_csv_row(mapping_file, start, reader.line_num, row)
                if any(cell.strip() for cell in row):
                    yield start, row
                start = reader.line_num + 1
        except csv.Error as err:
            hint = "; is a closing quote missing?" if "field limit" in str(err) else ""
            raise KoinError(f"{mapping_file} line {start} is not valid CSV ({err}){hint}") from err


def read_class_names(mapping_file: Path | None, class_ids: list[str]) -> list[str]:
    """Label names in class-id order: from classes.csv (id,name) when given, else the ids.

    The file is UTF-8 CSV (a BOM is fine) with a header line naming the columns `id` and `name`;
    other columns are ignored, fields may be quoted, and every class folder needs a name. A NUL
    byte, a control character or an unclosed quote is an error naming the line.
    """
    if mapping_file is None:
        return [printable(class_id) for class_id in class_ids]
    known = set(class_ids)
    mapping: dict[str, str] = {}
    header: list[str] | None = None
    try:
        for line, row in _csv_rows(mapping_file):
            if header is None:
                header = [cell.strip().lower() for cell in row]
                if not {"id", "name"} <= set(header):
                    break
                continue
            cells = dict(zip(header, row, strict=False))
            csv_id = (cells.get("id") or "").strip()
            name = (cells.get("name") or "").strip()
            if not csv_id and not name:
                continue
            class_id = _same_id(csv_id, known) or csv_id
            if class_id in mapping and mapping[class_id] != name:
                raise KoinError(f"{mapping_file} line {line} names class {csv_id!r} a second time")
            mapping[class_id] = name
    except UnicodeDecodeError as err:
        raise KoinError(
            f"{mapping_file} is not UTF-8 text; save it as UTF-8 CSV (byte {err.start})"
        ) from err
    if header is None or not {"id", "name"} <= set(header):
        raise KoinError(
            f"{mapping_file} must start with a header line naming the columns id and name"
        )
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
    train = _child_dir(normal, ("train",))
    if train is None:
        where = normal if normal is not None else root / "normal_cases"
        raise KoinError(f"{where / 'train'} is missing: its class folders define the classes")
    ids = sorted(
        child.name
        for child in train.iterdir()
        if child.is_dir() and not _is_system_folder(child.name)
    )
    if not ids:
        raise KoinError(f"{train} has no class folders")
    return ids


def case_split_dirs(root: Path, case: str) -> dict[str, Path]:
    """The split folders present for one case, e.g. {"test": .../hard_cases/test}."""
    case_dir = _child_dir(root, CASE_FOLDERS[case])
    splits = {}
    for split in CASE_SPLITS[case]:
        split_dir = _child_dir(case_dir, (split,))
        if split_dir is not None:
            splits[split] = split_dir
    return splits


def unused_case_entries(root: Path, case: str) -> list[tuple[Path, str]]:
    """Entries of a case folder that are not one of its split folders, with the reason.

    `hard_cases/val/` or a stray photo next to `test/` would otherwise vanish unnoticed.
    """
    case_dir = _child_dir(root, CASE_FOLDERS[case])
    if case_dir is None:
        return []
    splits = set(case_split_dirs(root, case).values())
    unused = []
    for entry in sorted(case_dir.iterdir()):
        if entry in splits:
            continue
        if entry.is_dir():
            reason = (
                "system or hidden folder"
                if _is_system_folder(entry.name)
                else (
                    f"not a split folder of {case_dir.name} (expected {' or '.join(CASE_SPLITS[case])})"
                )
            )
        else:
            reason = skip_reason_for_name(entry) or f"not inside a split folder of {case_dir.name}"
        unused.append((entry, reason))
    return unused


@dataclass
class SplitListing:
    """What one split folder holds: candidate images and everything set aside, with reasons."""

    files: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, class)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)


def list_split(
    root: Path, split_dir: Path, known: set[str], unknown_people: bool = False
) -> SplitListing:
    """List a split folder: <class id>/<image>. Raises KoinError for a class unknown to training
    (or, with `unknown_people`, for one that IS a class: unknown_cases holds other people).

    Only files directly inside a class folder are images (the authors' layout); anything else
    is reported, never silently dropped.
    """
    listing = SplitListing()
    for entry in sorted(split_dir.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and _is_system_folder(entry.name):
            listing.skipped.append((entry, "system or hidden folder"))
        elif not entry.is_dir():
            reason = skip_reason_for_name(entry)
            listing.skipped.append((entry, reason or "not inside a class folder"))
        elif unknown_people:
            if entry.name in known:
                raise KoinError(
                    f"folder {entry} names a class of normal_cases/train; unknown_cases holds "
                    "people who are not among the classes (remove it or give it another id)"
                )
            _list_class_folder(root, entry, listing)
        elif entry.name not in known:
            raise KoinError(
                f"class folder {entry} is not among the classes of normal_cases/train; "
                "every class needs training images (add the folder there, or remove this one)"
            )
        else:
            _list_class_folder(root, entry, listing)
    return listing


def _list_class_folder(root: Path, class_dir: Path, listing: SplitListing) -> None:
    members = sorted(class_dir.iterdir())
    if not members:
        listing.warnings.append((class_dir, "empty class folder"))
    for member in members:
        if member.is_dir() and not member.is_symlink():
            if _is_system_folder(member.name):
                reason: str | None = "system or hidden folder"
            else:
                inside = sum(1 for p in member.rglob("*") if not p.is_dir())
                reason = (
                    "a folder inside a class folder; images must sit directly in the class "
                    f"folder ({inside} file(s) in it not imported)"
                )
        else:
            reason = skip_reason_for_name(member) or file_problem(member)
        if reason:
            listing.skipped.append((member, reason))
        else:
            listing.files.append((member.relative_to(root).as_posix(), class_dir.name))


def check_layout(root: Path) -> dict[str, dict[str, SplitListing]]:
    """List every case and split up front, so layout mistakes fail before hours of decoding."""
    known = set(list_class_ids(root))
    return {
        case: {
            split: list_split(root, d, known, case == OPEN_SET_CONFIG)
            for split, d in case_split_dirs(root, case).items()
        }
        for case in CASE_FOLDERS
    }


class Koin(datasets.GeneratorBasedBuilder):
    """KoIn Korean celebrity faces: `normal`, `hard` and `group` configurations."""

    BUILDER_CONFIG_CLASS = KoinBuilderConfig
    BUILDER_CONFIGS = [
        KoinBuilderConfig(
            name="normal", case="normal", description="Normal photos: train and test."
        ),
        KoinBuilderConfig(name="hard", case="hard", description="Hard cases: masks and hats."),
        KoinBuilderConfig(name="group", case="group", description="Group photos: test only."),
        KoinBuilderConfig(
            name="unknown",
            case="unknown",
            description="People who are not among the classes (open set): test only, label -1.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "normal"

    @property
    def raw_location(self) -> RawLocation:
        if not self.config.data_dir:
            raise KoinError("the KoIn builder needs data_dir: a raw KoIn folder or .zip")
        if not hasattr(self, "_raw_location"):
            self._raw_location = locate_raw(self.config.data_dir, self.config.extract_dir)
        return self._raw_location

    @property
    def raw_root(self) -> Path:
        return self.raw_location.root

    def class_ids(self) -> list[str]:
        return list_class_ids(self.raw_root)

    def _info(self) -> datasets.DatasetInfo:
        # _info runs inside DatasetBuilder.__init__; without data_dir the features stay unknown.
        features = None
        if self.config.data_dir:
            ids = self.class_ids()
            names = read_class_names(find_class_names_file(self.raw_location), ids)
            features = datasets.Features(
                {
                    "image": datasets.Image(),
                    "label": datasets.ClassLabel(names=names),
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
        for path, reason in unused_case_entries(self.raw_root, self.config.case):
            self._skip(path, reason)
        generators = []
        for split, split_dir in split_dirs.items():
            listing = list_split(
                self.raw_root, split_dir, known, self.config.case == OPEN_SET_CONFIG
            )
            for path, reason in listing.skipped:
                self._skip(path, reason)
            for path, reason in listing.warnings:
                logger.warning("%s: %s", reason, path)
                self._record("warnings", path, reason)
            generator = datasets.SplitGenerator(name=split, gen_kwargs={"files": listing.files})
            # Known up front, so the progress bar shows a total and an ETA.
            generator.split_info.num_examples = len(listing.files)
            generators.append(generator)
        return generators

    def _generate_examples(self, files: list[tuple[str, str]]) -> Iterator[tuple[str, dict]]:
        label_of = {class_id: index for index, class_id in enumerate(self.class_ids())}
        for relative, class_id in files:
            try:
                image_bytes = image_bytes_for_dataset(
                    self.raw_root / relative,
                    self.config.image_size,
                    self.config.jpeg_quality,
                    max_megapixels=self.config.max_megapixels,
                )
            except UnusableImage as err:
                self._skip(self.raw_root / relative, str(err))
                continue
            image_id = printable(relative)
            yield (
                image_id,
                {
                    "image": {"bytes": image_bytes, "path": None},
                    "label": label_of.get(class_id, UNKNOWN_LABEL_ID),
                    "image_id": image_id,
                },
            )

    def _record(self, kind: str, path: Path, reason: str) -> None:
        """Append to a per-process JSON-lines log: decoding may run in num_proc workers."""
        if not self.config.skip_log_dir:
            return
        log = Path(self.config.skip_log_dir) / f"{kind}-{os.getpid()}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            record = {"path": printable(str(path)), "reason": printable(reason)}
            handle.write(json.dumps(record) + "\n")

    def _skip(self, path: Path, reason: str) -> None:
        logger.info("skipping %s: %s", path, reason)
        self._record("skipped", path, reason)
