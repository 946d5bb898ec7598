"""Data path: raw KoIn photos to normalised 224x224 training batches, three ways, side by side.

Contenders, each a DataLoader with the same batch size, shuffling and number of workers, and the
same augmentation (RandomResizedCrop(224, scale), horizontal flip, ImageNet normalisation):

* koin-hf:      `koin prepare` once (shorter side 256, JPEG in parquet), then the prepared
                 dataset through `make_train_transform` (reduced-size decode, uint8 augmentation),
                 exactly as train.py feeds Trainer;
* ImageFolder:  torchvision `ImageFolder` over the raw photos (the KoIn authors' notebooks);
* HF example:   `load_dataset("imagefolder", data_dir=...)` + `with_transform` with torchvision
                 transforms on PIL images (transformers' run_image_classification.py).

Target: koin-hf at least 5x the images/second of both, judged by the median over rounds of the
round-by-round ratio (each round runs all three back to back, so passing load cancels out). The one-off cost of `koin prepare` and the
number of epochs after which it has paid for itself are printed too.

    python benchmarks/bench_data_path.py            # 1,000 phone photos (1080x1350, JPEG q90)
    python benchmarks/bench_data_path.py --quick    # smoke run at a tiny size
"""

from __future__ import annotations

import resource
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Stopwatch,
    base_parser,
    interleaved,
    load_average,
    machine_description,
    median,
    paired_ratios,
    spread,
    synthetic_raw,
    verdict,
    work_dir,
)

TARGET = 5.0
SIZE = 224


def koin_loader_factory(
    prepared_dir: Path, scale: tuple[float, float], batch_size: int, workers: int
) -> Callable[[], torch.utils.data.DataLoader]:
    """The training input pipeline of train.py (koin_hf.training.run.run_training), on its own."""
    import datasets
    from transformers import ViTImageProcessor

    from koin_hf.data import loading as koin_data
    from koin_hf.data import transforms

    processor = ViTImageProcessor(
        size={"height": SIZE, "width": SIZE}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    train = koin_data.load_prepared(prepared_dir, "normal", split="train")
    train = train.cast_column("image", datasets.Image(decode=False))
    clock = transforms.AugmentationClock(seed=0)
    transform = transforms.make_train_transform(processor, scale=scale, clock=clock)
    train = transforms.apply_transform(train, transform)

    def make() -> torch.utils.data.DataLoader:
        clock.epoch += 1  # what AugmentationClockCallback does at each epoch start
        return torch.utils.data.DataLoader(
            train,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            collate_fn=transforms.collate,
        )

    return make


def _torchvision_train_transforms(scale: tuple[float, float]):
    """The classic PIL transforms both reference paths use."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.RandomResizedCrop(SIZE, scale=scale),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def image_folder_loader_factory(
    train_dir: Path, scale: tuple[float, float], batch_size: int, workers: int
) -> Callable[[], torch.utils.data.DataLoader]:
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(train_dir), transform=_torchvision_train_transforms(scale))

    def make() -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=workers
        )

    return make


def hf_example_loader_factory(
    hf_dataset, scale: tuple[float, float], batch_size: int, workers: int
) -> Callable[[], torch.utils.data.DataLoader]:
    """transformers' examples/pytorch/image-classification: transforms and collate_fn as there."""
    train_transforms = _torchvision_train_transforms(scale)

    def preprocess_train(example_batch: dict) -> dict:
        example_batch["pixel_values"] = [
            train_transforms(image.convert("RGB")) for image in example_batch["image"]
        ]
        return example_batch

    def collate_fn(examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        labels = torch.tensor([example["label"] for example in examples])
        return {"pixel_values": pixel_values, "labels": labels}

    dataset = hf_dataset.with_transform(preprocess_train)

    def make() -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_fn
        )

    return make


def load_hf_imagefolder(train_dir: Path, cache_dir: Path):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset(
        "imagefolder", data_dir=str(train_dir), split="train", cache_dir=str(cache_dir)
    )


@dataclass
class Epoch:
    """One pass over the data: wall-clock images/second and CPU time per image (all processes)."""

    images_per_second: float
    cpu_ms_per_image: float

    def __str__(self) -> str:
        return f"{self.images_per_second:7.1f} img/s  {self.cpu_ms_per_image:5.2f} CPU-ms/img"


def _cpu_seconds() -> float:
    """CPU time of this process plus every child it has waited for (finished loader workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_epoch(make_loader: Callable[[], torch.utils.data.DataLoader]) -> Callable[[], Epoch]:
    """A contender: one pass over the data, workers started and joined inside the timing."""

    def run() -> Epoch:
        images = 0
        cpu_before = _cpu_seconds()
        with Stopwatch() as watch:
            for batch in make_loader():  # exhausting the loader joins its workers
                pixels = batch["pixel_values"] if isinstance(batch, dict) else batch[0]
                if pixels.shape[1:] != (3, SIZE, SIZE) or pixels.dtype != torch.float32:
                    raise RuntimeError(f"unexpected batch {tuple(pixels.shape)} {pixels.dtype}")
                images += len(pixels)
        cpu = _cpu_seconds() - cpu_before
        return Epoch(images / watch.seconds, 1000 * cpu / images)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="raw training photos")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--photo-size", default="phone", help="koin synth --image-size")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, all paths")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved epochs per contender")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.classes, args.photo_size, args.rounds = 24, 2, "small", 1
    scale = (0.5, 1.0)  # make_train_transform's default; the references get the same
    root = work_dir(args.work_dir)
    print(machine_description())

    per_class = max(1, args.images // args.classes)
    name = f"raw-{args.photo_size}-{args.classes}x{per_class}"
    raw = synthetic_raw(
        root, name, num_classes=args.classes, train_per_class=per_class, image_size=args.photo_size
    )
    train_dir = raw / "normal_cases" / "train"
    n_images = sum(1 for path in train_dir.rglob("*.jpg"))
    photo_bytes = sum(path.stat().st_size for path in train_dir.rglob("*.jpg"))
    print(
        f"\nraw photos: {n_images} in {args.classes} classes, {args.photo_size} "
        f"({photo_bytes / n_images / 1024:.0f} KiB each on average), JPEG quality 90"
    )

    # One-off costs, measured fresh every run.
    from koin_hf.data.prepare import prepare_koin

    prepared_dir = root / f"{name}-prepared"
    shutil.rmtree(prepared_dir, ignore_errors=True)
    with Stopwatch() as prepare_watch:
        prepare_koin(raw, prepared_dir, image_size=256, verbose=False)
    prepared_bytes = sum(p.stat().st_size for p in prepared_dir.rglob("*.parquet"))
    hf_cache = root / "hf-imagefolder-cache"
    shutil.rmtree(hf_cache, ignore_errors=True)
    with Stopwatch() as hf_load_watch:
        hf_dataset = load_hf_imagefolder(train_dir, hf_cache)
    with Stopwatch() as folder_scan_watch:
        image_folder = image_folder_loader_factory(train_dir, scale, args.batch_size, args.workers)
    print(
        f"one-off: koin prepare {prepare_watch.seconds:.1f} s "
        f"({n_images / prepare_watch.seconds:.0f} images/s, one process: the CLI default; "
        f"{photo_bytes / 2**20:.0f} MiB of photos -> {prepared_bytes / 2**20:.1f} MiB of parquet); "
        f'load_dataset("imagefolder") {hf_load_watch.seconds:.1f} s; '
        f"ImageFolder scan {folder_scan_watch.seconds:.2f} s"
    )

    contenders = {
        "koin-hf (prepared parquet)": one_epoch(
            koin_loader_factory(prepared_dir, scale, args.batch_size, args.workers)
        ),
        "(a) torchvision ImageFolder": one_epoch(image_folder),
        "(b) HF example imagefolder": one_epoch(
            hf_example_loader_factory(hf_dataset, scale, args.batch_size, args.workers)
        ),
    }
    print(
        f"\n{args.rounds} interleaved epochs per contender, batch {args.batch_size}, "
        f"{args.workers} DataLoader workers each, images/second:"
    )
    results = interleaved(contenders, args.rounds)

    koin_name = "koin-hf (prepared parquet)"
    rates = {name_: [e.images_per_second for e in epochs] for name_, epochs in results.items()}
    cpu = {name_: median([e.cpu_ms_per_image for e in epochs]) for name_, epochs in results.items()}
    koin_rate = median(rates[koin_name])
    one_offs = {
        "(a) torchvision ImageFolder": folder_scan_watch.seconds,
        "(b) HF example imagefolder": hf_load_watch.seconds,
    }
    print(
        f"\n{'contender':<30} {'median img/s':>12} {'range':>17} {'speed-up':>9} "
        f"{'CPU-ms/img':>10} {'CPU ratio':>9}"
    )
    for name_ in results:
        rate = median(rates[name_])
        print(
            f"{name_:<30} {rate:>12,.1f} {spread(rates[name_]):>17} "
            f"{koin_rate / rate:>8.2f}x {cpu[name_]:>10.2f} {cpu[name_] / cpu[koin_name]:>8.2f}x"
        )
    print(
        "(speed-up: koin-hf's median images/s over the contender's; CPU ratio: the contender's "
        "CPU time per image, all processes, over koin-hf's: the same comparison, less sensitive "
        f"to other load on the machine; load average at the end {load_average()})\n"
    )
    for name_ in results:
        if name_ == koin_name:
            continue
        per_round = paired_ratios(rates[koin_name], rates[name_])
        ratio = median(per_round)
        saved_per_epoch = n_images / median(rates[name_]) - n_images / koin_rate
        extra = prepare_watch.seconds - one_offs[name_]
        break_even = extra / saved_per_epoch if saved_per_epoch > 0 else float("inf")
        print(
            f"koin-hf vs {name_}: per round {' '.join(f'{r:.2f}' for r in per_round)}; "
            f"median {ratio:.2f}x  {verdict(ratio, TARGET)}\n"
            f"    saves {saved_per_epoch:.1f} s per epoch of {n_images} images; prepare "
            f"(minus this path's own one-off load) pays for itself after {break_even:.2f} epochs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
