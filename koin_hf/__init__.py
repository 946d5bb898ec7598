"""koin-hf: the KoIn face-recognition benchmark as a first-class Hugging Face citizen.

The Python API is the few functions below, one per stage; each is what the `koin` command of the
same name runs. Everything else lives in the stage packages (`koin_hf.data`, `koin_hf.models`,
`koin_hf.training`, `koin_hf.evaluation`, `koin_hf.hub`) and may change between versions.

    import koin_hf
    raw = koin_hf.synthesize("raw")                     # or your KoIn download
    data = koin_hf.prepare(raw, "koin")
    metrics = koin_hf.train(model_name_or_path="vit-tiny", dataset_name=str(data))
    results = koin_hf.evaluate("outputs/koin-vit-tiny", dataset=data)
    koin_hf.predict("outputs/koin-vit-tiny", ["photo.jpg"])

The stage modules are imported inside the functions, so `import koin_hf` stays light (no torch).
The functions that run models apply koin-hf's process set-up first (`koin_hf.runtime`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koin_hf.errors import KoinError
from koin_hf.runtime import configure_process
from koin_hf.version import __version__

if TYPE_CHECKING:
    from koin_hf.hub.push import PushResult

__all__ = [
    "KoinError",
    "__version__",
    "evaluate",
    "load",
    "predict",
    "prepare",
    "push_dataset",
    "push_model",
    "recognize",
    "synthesize",
    "train",
]


def synthesize(
    out_dir: str | Path, *, num_classes: int = 10, seed: int = 0, **options: Any
) -> Path:
    """Write the embedded synthetic KoIn (drawn faces, not real people) in the raw KoIn layout.

    `options` are those of `koin synth` (`train_per_class`, `test_per_class`, `hard_per_class`,
    `group_per_class`, `image_size`, `quality`, `workers`, `progress`). Returns the folder.
    """
    from koin_hf.synthetic.writer import generate_synthetic_koin

    return generate_synthetic_koin(out_dir, num_classes=num_classes, seed=seed, **options)


def prepare(
    raw: str | Path,
    out_dir: str | Path,
    *,
    image_size: int = 256,
    num_proc: int | None = None,
    max_megapixels: float | None = None,
    faces: bool = False,
    face_detector: str = "blazeface",
) -> Path:
    """Turn a raw KoIn folder or .zip into a script-free Hub dataset folder; return the folder.

    `image_size` caps each stored image's shorter side (0 keeps the originals); `num_proc`
    decodes in that many processes; an image whose header declares more than `max_megapixels`
    (default $KOIN_MAX_MEGAPIXELS, else 64) is skipped. Skipped files are listed, with their
    reasons, in `prepare_report.json`. `faces` adds the normal-faces, hard-faces and
    group-faces configs found by `face_detector` (docs/FACES.md; needs the faces extra).
    """
    from koin_hf.data.prepare import prepare_koin

    extra = None
    if faces:
        from koin_hf.faces.prepare import make_face_configs

        extra = make_face_configs(
            detector=face_detector, image_size=image_size, max_megapixels=max_megapixels
        )
    prepare_koin(
        raw,
        out_dir,
        image_size=image_size,
        num_proc=num_proc,
        max_megapixels=max_megapixels,
        extra_configs=extra,
    )
    return Path(out_dir)


def load(
    dataset: str | Path = "koin",
    config: str = "normal",
    *,
    split: str | None = None,
    streaming: bool = False,
):
    """`datasets.load_dataset(dataset, config)` with one-sentence errors.

    `dataset` is a prepared folder or a Hub id; `config` one of normal, hard, group. Returns a
    DatasetDict (an IterableDatasetDict when streaming), or one split when `split` is given.
    """
    from koin_hf.data.loading import load_prepared

    return load_prepared(dataset, config, split=split, streaming=streaming)


def train(args: Sequence[str] | None = None, /, **arguments: Any) -> dict[str, float]:
    """Run train.py in this process; return every final metric (also in all_results.json).

    Pass train.py's flags as keyword arguments (`train(model_name_or_path="vit", lora=True,
    shots_per_class=5)`), or as a list of command-line strings (preset files first, as on the
    command line), or both: keywords override the list. See `python train.py --help`.
    """
    configure_process()
    from koin_hf.training.arguments import parse_arguments
    from koin_hf.training.run import run_training

    argv = list(args or [])
    for name, value in arguments.items():
        argv += [f"--{name}", *_flag_values(value)]
    return run_training(*parse_arguments(argv))


def _flag_values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]


def evaluate(
    model: str | Path,
    dataset: str | Path | Mapping | None = None,
    *,
    configs: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    **options: Any,
) -> dict:
    """Top-1/top-3 of `model` on the KoIn test configs, per class, and the robustness drops.

    `dataset` defaults to the one named in the model's run record (koin_training.json);
    `configs` to every KoIn config the dataset has. With `output_dir`, metrics.json, report.md,
    predictions CSVs and plots are written there. `options` are `evaluate_model`'s (batch_size,
    split, zero_shot, prompt_template, device, plots, num_workers). Returns metrics.json's content.
    """
    configure_process()
    from koin_hf.evaluation.run import dataset_from_run_record, evaluate_model

    if dataset is None:
        try:
            dataset = dataset_from_run_record(model)
        except KoinError as err:
            raise KoinError(f"pass dataset=...: {err}") from None
    return evaluate_model(model, dataset, configs=configs, output_dir=output_dir, **options)


def predict(
    model: str | Path,
    images: Sequence[str | Path],
    *,
    top_k: int = 3,
    device: Any = None,
    max_megapixels: float | None = None,
) -> list[list[dict]]:
    """For each image, the model's top-k `{"label": name, "score": p}`, as pipeline() gives them.

    Files are decoded by koin-hf's decoder; one whose header declares more than `max_megapixels`
    (default $KOIN_MAX_MEGAPIXELS, else 64) is refused before the model loads.
    """
    configure_process()
    from koin_hf.evaluation.predict import predict as predict_images

    return predict_images(model, images, top_k=top_k, device=device, max_megapixels=max_megapixels)


def recognize(
    model: str | Path,
    images: Sequence[str | Path],
    *,
    detector: str = "blazeface",
    top_k: int = 3,
    output_dir: str | Path | None = None,
    **options: Any,
) -> list[dict]:
    """Every face of every photo with its box and the model's top-k names (see docs/FACES.md).

    One dict per image: `image`, `width`, `height`, `faces` (each `box`, `score`, `landmarks`,
    `predictions`: `[{"label", "score"}, ...]`) and `annotated` (the PNG written to `output_dir`
    with boxes and names, else None). `options`: max_side, margin, device, max_megapixels.
    Needs the `faces` extra.
    """
    configure_process()
    from koin_hf.evaluation.recognize import recognize as recognize_faces

    return recognize_faces(
        model, images, detector=detector, top_k=top_k, output_dir=output_dir, **options
    )


def push_model(model_dir: str | Path, repo_id: str, **options: Any) -> PushResult:
    """Upload a trained model folder with its model card; `url, commit = push_model(...)`.

    `options`: private, token, revision, commit_message, overwrite_card, dry_run. The result
    also lists what was uploaded (`.uploaded`) and left out (`.excluded`); see docs/HUB.md.
    """
    from koin_hf.hub.push import push_model as push

    return push(model_dir, repo_id, **options)


def push_dataset(data_dir: str | Path, repo_id: str, **options: Any) -> PushResult:
    """Upload a prepared dataset folder; `load_dataset(repo_id, "hard")` works afterwards.

    `options`: private, token, revision, commit_message, dry_run. Unpacks as
    `url, commit = push_dataset(...)`, like push_model's result.
    """
    from koin_hf.hub.push import push_dataset as push

    return push(data_dir, repo_id, **options)
