"""Open set on a trained model: calibration, known vs unknown, and enrolling new people.

    python benchmarks/bench_open_set.py MODEL DATASET   # MODEL: a train.py output folder
    python benchmarks/bench_open_set.py --quick         # tiny ViT, tiny data: checks it runs

DATASET must have an `unknown` config (`koin synth --unknown_classes K`, then `koin prepare`;
for a model trained on `normal-faces`, `koin prepare --faces`: it is then scored on face crops
and enrolled from whole photos, which `koin enroll` cuts to their face). On a copy of MODEL:

1. `koin calibrate` (temperature on validation, prototypes, threshold for FAR 1%), then
   `koin evaluate --open_set` numbers: AUROC known (normal test) vs unknown, TAR at FAR 1% and
   0.1%, ECE before and after the temperature.
2. Enrolment: each unknown person in turn is enrolled from 5 photos (`koin enroll`), scored on
   their other photos (top-1 among all labels), and the trained people's normal-test top-1 is
   compared before and after; then `koin unenroll` restores the folder. Targets (issue #15):
   AUROC >= 0.90, ECE <= 0.05 after temperature scaling, the enrolled person >= 80% top-1 on
   their own photos, the trained people's top-1 dropping by <= 2 points.

Scores are computed from the cached embeddings and the folder's own head (the logits
`pipeline()` computes, see koin_hf.evaluation.embeddings).
"""

from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import base_parser, load_average, machine_description, work_dir

SHOTS = 5


def _quick_inputs(work: Path) -> tuple[Path, Path]:
    from datasets import load_dataset

    from koin_hf.data.prepare import prepare_koin
    from koin_hf.models.loading import load_model_and_processor
    from koin_hf.synthetic.writer import generate_synthetic_koin

    raw, data, model_dir = work / "raw-quick", work / "prepared-quick", work / "model-quick"
    if not (data / "README.md").is_file():
        shutil.rmtree(raw, ignore_errors=True)
        generate_synthetic_koin(
            raw, num_classes=3, train_per_class=8, test_per_class=3, hard_per_class=2,
            group_per_class=1, unknown_classes=2, unknown_per_class=SHOTS + 2,
            image_size="48x60", workers=1, progress=False,
        )  # fmt: skip
        prepare_koin(raw, data, image_size=48, verbose=False)
    names = load_dataset(str(data), "normal", split="train").features["label"].names
    model, processor, _ = load_model_and_processor("vit-tiny", names, seed=0)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    return model_dir, data


def _top1(model_dir: Path, embeddings, labels: list[str]) -> np.ndarray:
    """Top-1 label index (in the folder's current labels) of each embedded image."""
    from koin_hf.evaluation.embeddings import Embedder, head_parameters, logits_from_embeddings

    weight, bias = head_parameters(Embedder(model_dir).model)
    return logits_from_embeddings(embeddings.features, weight, bias).argmax(axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a trained koin-hf model folder")
    parser.add_argument("dataset", nargs="?", help="a prepared dataset with an unknown config")
    args = parser.parse_args(argv)
    work = work_dir(args.work_dir) / "bench_open_set"
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        source, dataset = _quick_inputs(work)
    elif args.model and args.dataset:
        source, dataset = Path(args.model), Path(args.dataset)
    else:
        parser.error("pass MODEL and DATASET (or --quick)")

    from datasets import load_dataset

    from koin_hf.errors import KoinError
    from koin_hf.evaluation.embeddings import Embedder, embed_configs
    from koin_hf.evaluation.open_set_eval import OpenSetConfigs, evaluate_open_set
    from koin_hf.training.calibrate import calibrate_model
    from koin_hf.training.enroll import enroll, unenroll

    print(machine_description())
    print(f"load average before: {load_average()}")
    model = work / "model"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(source, model)
    settings = calibrate_model(model, dataset)
    results = evaluate_open_set(model, dataset, work / "report")
    fitted = settings["fitted_on"]
    print(f"\ncalibration: temperature {settings['temperature']:.4f}; validation ECE "
          f"{fitted['validation_ece_before']:.4f} -> {fitted['validation_ece_after']:.4f}")  # fmt: skip
    print(f"threshold ({settings['score']}, FAR {settings['target_far']:g} on validation "
          f"impostors): {settings['threshold']:.4f}")  # fmt: skip
    print(f"\n{'known set':<8} {'n':>4} {'top-1':>7} {'AUROC':>7} {'AUROC msp':>10} "
          f"{'TAR@1%':>7} {'TAR@0.1%':>9} {'open-acc':>9} {'ECE before':>11} {'ECE after':>10}")  # fmt: skip
    for config, entry in results["configs"].items():
        tar = entry["tar_at_far"]
        print(
            f"{config:<8} {entry['n']:>4} {100 * entry['top1_accuracy']:6.2f}% "
            f"{entry['auroc'][settings['score']]:7.4f} {entry['auroc']['msp']:10.4f} "
            f"{100 * tar['0.01']['tar']:6.2f}% {100 * tar['0.001']['tar']:8.2f}% "
            f"{100 * entry['open_set_accuracy']['accuracy']:8.2f}% "
            f"{entry['ece']['before_temperature']:11.4f} {entry['ece']['after_temperature']:10.4f}"
        )
    print(f"{results['unknown_images']} unknown photos of {results['unknown_people']} people")

    # Enrolment, one unknown person at a time. A face model (trained on normal-faces) is scored
    # on face crops and enrolled from whole photos, which `koin enroll` cuts to their face.
    configs = OpenSetConfigs.for_model(model)
    known_config = configs.known[0]
    embedder = Embedder(model)
    embedded = embed_configs(embedder, dataset, [known_config, configs.unknown], splits=["test"])
    known, unknown = embedded[f"{known_config}/test"], embedded[f"{configs.unknown}/test"]
    labels = [embedder.model.config.id2label[i] for i in range(len(embedder.labels))]
    to_model = np.array([labels.index(n) for n in known.class_names])
    known_refs = to_model[known.labels]
    before = np.mean(_top1(model, known, labels) == known_refs)
    group = _group_set(embedder, dataset, configs.train)
    group_refs = to_model[group.labels] if group is not None else None
    group_before = (
        np.mean(_top1(model, group, labels) == group_refs) if group is not None else float("nan")
    )
    photos_of: dict[str, list[str]] = defaultdict(list)  # person -> their photos' image ids
    for image_id in dict.fromkeys(unknown.image_ids):
        photos_of[image_id.rsplit("/", 2)[-2]].append(image_id)
    raw_images = load_dataset(str(dataset), "unknown", split="test").cast_column(
        "image", _undecoded()
    )
    row_of = {image_id: i for i, image_id in enumerate(raw_images["image_id"])}
    print(f"\nenrolment from {SHOTS} photos ({configs.train} model: scored on {known_config} "
          f"and {configs.unknown}); trained people's top-1 before: {100 * before:.2f}%, "
          f"on group photos ({_group_name(configs.train)}): {100 * group_before:.2f}%")  # fmt: skip
    print(f"{'person':<8} {'own photos':>10} {'own top-1':>10} {'others top-1':>13} {'drop':>7} "
          f"{'group top-1':>12} {'group drop':>11}")  # fmt: skip
    own_scores, drops, group_drops = [], [], []
    for person, image_ids in sorted(photos_of.items()):
        if len(image_ids) <= SHOTS:
            continue
        shots = image_ids[:SHOTS]
        rest = np.array([i not in shots and i in image_ids for i in unknown.image_ids])
        photo_dir = work / "photos" / person
        shutil.rmtree(photo_dir, ignore_errors=True)
        photo_dir.mkdir(parents=True)
        paths = []
        for index, image_id in enumerate(shots):
            path = photo_dir / f"{index}.jpg"
            path.write_bytes(raw_images[row_of[image_id]]["image"]["bytes"])
            paths.append(str(path))
        name = f"Enrolled {person}"
        try:
            enroll(model, name, paths, dataset)
        except KoinError as err:  # e.g. a random --quick model: the photos do not cluster
            print(f"{person:<8} not enrolled: {err}")
            continue
        new_labels = [*labels, name]
        own = np.mean(_top1(model, unknown.subset(rest), new_labels) == len(labels))
        after = np.mean(_top1(model, known, new_labels) == known_refs)
        group_after = (
            np.mean(_top1(model, group, new_labels) == group_refs)
            if group is not None
            else float("nan")
        )
        unenroll(model, name)
        own_scores.append(own)
        drops.append(100 * (before - after))
        group_drops.append(100 * (group_before - group_after))
        print(f"{person:<8} {int(rest.sum()):>10} {100 * own:9.2f}% {100 * after:12.2f}% "
              f"{100 * (before - after):6.2f} {100 * group_after:11.2f}% "
              f"{100 * (group_before - group_after):10.2f}")  # fmt: skip
    if not own_scores:
        print("no one enrolled")
        return 0
    print(f"mean: own top-1 {100 * np.mean(own_scores):.2f}% (min {100 * min(own_scores):.2f}%), "
          f"trained people's drop {np.mean(drops):.2f} points (max {max(drops):.2f}); "
          f"on group photos {np.mean(group_drops):.2f} (max {max(group_drops):.2f})")  # fmt: skip
    print(f"load average after: {load_average()}")
    return 0


def _group_name(train_config: str) -> str:
    from koin_hf.faces.configs import is_face_config

    return "group-faces, the labelled faces" if is_face_config(train_config) else "group"


def _group_set(embedder, dataset, train_config: str):
    """The trained people on group photos: whole group photos for a whole-photo model; for a
    face model the labelled face of each group photo (synthetic data records which it is).
    None when the dataset has no such set."""
    from datasets import load_dataset

    from koin_hf.data.loading import config_names
    from koin_hf.evaluation.embeddings import embed_configs
    from koin_hf.faces.configs import is_face_config, like

    config = like(train_config, "group")
    if config not in config_names(dataset):
        return None
    group = embed_configs(embedder, dataset, [config], splits=["test"])[f"{config}/test"]
    if not is_face_config(config):
        return group
    labelled = np.array(
        [flag is True for flag in load_dataset(str(dataset), config, split="test")["labelled"]]
    )
    return group.subset(labelled) if labelled.any() else None


def _undecoded():
    import datasets

    return datasets.Image(decode=False)


if __name__ == "__main__":
    sys.exit(main())
