"""What a batch of dataset rows becomes before the model sees it: decoding, augmentation, tensors.

Every image is decoded by koin_hf.data.images (one decoder, one pixel budget), whether it comes
from a dataset row, a file or a URL. The training transform decodes small (reduced-size JPEG
decoding, libjpeg-turbo straight into a tensor, the same pixels as Pillow's), augments in uint8
and normalises in one fused pass (benchmarks/bench_data_path.py); the evaluation transform is
`decode_for_model` followed by the image processor `pipeline()` applies, exactly what
`koin evaluate` and `koin predict` do. Both are attached with `apply_transform`, which hands the
transform undecoded image bytes and keeps a memory-mapped dataset's resident pages in check.
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import datasets
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision.transforms import v2

from koin_hf.data.images import UnusableImage, decode_rgb, pixel_budget
from koin_hf.data.mapped_pages import releasing_pages
from koin_hf.dataset_script.koin import DEFAULT_IMAGE_SIZE
from koin_hf.errors import KoinError

try:  # deprecated since torchvision 0.29 (superseded by TorchCodec): Pillow decodes once it goes
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - depends on the installed torchvision
    decode_jpeg = None


def processor_input_size(processor: Any) -> tuple[int, int]:
    """(height, width) the model sees, whatever the image processor's size convention."""
    data_config = getattr(processor, "data_config", None)  # timm wrapper
    if data_config and "input_size" in data_config:
        _, height, width = data_config["input_size"]
        return int(height), int(width)
    # crop_size only matters when the processor crops (EfficientNet's Hub processor carries a
    # crop_size of 289 with do_center_crop off and feeds 224 pixels).
    attributes = ("crop_size", "size") if getattr(processor, "do_center_crop", False) else ("size",)
    for attribute in attributes:
        size = getattr(processor, attribute, None)
        if not size:
            continue
        size = dict(size) if not isinstance(size, dict) else size
        if size.get("height") and size.get("width"):
            return int(size["height"]), int(size["width"])
        if size.get("shortest_edge"):
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise KoinError(f"cannot tell the input size of image processor {type(processor).__name__}")


def model_decode_side(processor: Any) -> int | None:
    """The shorter side files are decoded to for a model: what `koin prepare` stores (256 px),
    or the model's input size when that is larger; None when the processor does not say.

    The image processor resizes to the input size anyway; decoding no more than this keeps a
    phone photo's decode cheap (reduced-size JPEG decoding) and gives a raw file the pixels its
    prepared copy has (before JPEG storage), so predict, evaluate and training agree.
    """
    try:
        height, width = processor_input_size(processor)
    except KoinError:
        return None
    return max(DEFAULT_IMAGE_SIZE, height, width)


def image_source(value: Any) -> Any:
    """What to decode from a datasets image value: its bytes, else its path; or the value
    itself (a path, bytes or a PIL image)."""
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path")
    return value


def describe_image(value: Any, image_id: str | None = None) -> str:
    """How an error names an image: its image_id, else its path, else "(in memory)"."""
    if image_id:
        return repr(image_id)
    path = value.get("path") if isinstance(value, dict) else value
    return repr(str(path)) if isinstance(path, (str, os.PathLike)) else "(in memory)"


def decode_for_model(
    value: Any, decode_side: int | None, max_megapixels: float | None = None
) -> Image.Image:
    """The RGB image a model's image processor gets for one file, dataset value or PIL image.

    The one place `koin evaluate`, `koin predict` and training evaluation turn an image into what
    the processor sees. Raises UnusableImage with the reason.
    """
    return decode_rgb(image_source(value), decode_side, max_megapixels=max_megapixels)


def processor_normalization(processor: Any) -> tuple[list[float], list[float]]:
    data_config = getattr(processor, "data_config", None)
    if data_config and "mean" in data_config:
        return list(data_config["mean"]), list(data_config["std"])
    mean = getattr(processor, "image_mean", None)
    std = getattr(processor, "image_std", None)
    if mean is None or std is None:
        return [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    return list(mean), list(std)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run per-image tensor work on one intra-op thread, as DataLoader workers always do.

    Pre-processing ops are small (~150k elements), so splitting each over threads gains little;
    when the cores are shared with anything else, though, every split op waits for a descheduled
    sibling thread: measured on 2 busy cores, an image processor took 30 ms per image with 2
    threads and 1 ms with 1. Training and evaluation transforms run in the training process
    itself when `dataloader_num_workers` is 0 (Trainer's default), so they pin themselves here.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _decode_small_rgb_jpeg(
    data: bytes, min_side: int, budget: float | None = None
) -> torch.Tensor | None:
    """libjpeg-turbo straight into a tensor, for what prepared datasets hold: small RGB JPEGs.

    About 1.5x faster than Pillow + conversion on a 256-pixel image, and the same pixels (both
    are libjpeg-turbo with the same settings; tests/data/test_transforms.py checks). None for
    anything else (not a JPEG, not RGB, more than twice the size the crop needs, over the pixel
    budget, unreadable): `decode_rgb` handles those, with reduced-size decoding and a reason.
    """
    if decode_jpeg is None or not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        with Image.open(io.BytesIO(data)) as header:  # parses the headers, decodes nothing
            width, height = header.size
            if (
                header.format != "JPEG"
                or header.mode != "RGB"
                or min(width, height) > 2 * min_side
                or width * height > pixel_budget(budget) * 1_000_000
            ):
                return None
        return decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8),
            mode=ImageReadMode.RGB,
            apply_exif_orientation=True,
        )
    except Exception:  # whatever went wrong, the robust path decides (and names the reason)
        return None


def _decode(value: Any, min_side: int, budget: float | None = None) -> torch.Tensor:
    """An undecoded datasets image ({'bytes', 'path'}), or a PIL image, as a uint8 CHW tensor."""
    source = image_source(value)
    if isinstance(source, bytes):
        pixels = _decode_small_rgb_jpeg(source, min_side, budget)
        if pixels is not None:
            return pixels
    try:
        # Reduced-size JPEG decoding: never decode many more pixels than the crop can use.
        # Up to twice the crop size is kept as decoded: the random crop resamples anyway,
        # and a second resampling pass here would cost as much as the decode itself.
        image = decode_rgb(source, max_shorter_side=min_side, slack=2.0, max_megapixels=budget)
    except UnusableImage as err:
        raise KoinError(f"training image could not be decoded: {err}") from err
    return v2.functional.pil_to_tensor(image)


class AugmentationClock:
    """The epoch number the training transform keys its randomness on.

    A Trainer callback (koin_hf.training.trainer.AugmentationClockCallback) advances it at each epoch start. Keying augmentation
    on (seed, epoch, image content) instead of the global RNG makes it reproducible across
    resumes, worker counts and processes: Trainer prefetches a batch before it restores the RNG
    state of a checkpoint, so global-RNG augmentation cannot resume exactly.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def sample_seed(self, image_bytes: bytes | None) -> int:
        content = zlib.crc32(image_bytes) if image_bytes else 0
        return hash((self.seed, self.epoch, content)) & 0x7FFF_FFFF


def make_train_transform(
    processor: Any,
    image_column: str = "image",
    label_column: str = "label",
    scale: tuple[float, float] = (0.5, 1.0),
    clock: AugmentationClock | None = None,
    max_megapixels: float | None = None,
) -> Callable[[dict[str, list]], dict[str, Any]]:
    """Batch transform for `set_transform`: decode small, augment in uint8, normalise last.

    Crop scale starts at 0.5 rather than torchvision's 0.08: a face cropped to 8% of a stage
    photo is usually no face at all. With a `clock`, each image's augmentation is seeded from
    (seed, epoch, image bytes) so it does not depend on what else drew random numbers.
    `max_megapixels`: the pixel budget (default: $KOIN_MAX_MEGAPIXELS, else 64).
    """
    budget = pixel_budget(max_megapixels)  # a bad $KOIN_MAX_MEGAPIXELS fails now, not mid-epoch
    height, width = processor_input_size(processor)
    mean, std = processor_normalization(processor)
    augment = v2.Compose(
        [
            v2.RandomResizedCrop((height, width), scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )
    # v2.ToDtype(scale=True) + v2.Normalize in one pass that writes straight into the batch:
    # (x / 255 - mean) / std == x * (1 / (255 * std)) - mean / std.
    std_tensor = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    gain = 1.0 / (255.0 * std_tensor)
    minus_offset = -torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) / std_tensor
    decode_side = max(height, width)
    generator = torch.default_generator  # what the v2 transforms draw from

    def augment_one(value: Any) -> torch.Tensor:
        pixels = _decode(value, decode_side, budget)
        if clock is None:
            return augment(pixels)
        # Seed the global CPU generator for this image and put its state back afterwards
        # (torch.manual_seed would also touch every accelerator's generator, 50x slower).
        state = generator.get_state()
        try:
            generator.manual_seed(
                clock.sample_seed(value.get("bytes") if isinstance(value, dict) else None)
            )
            return augment(pixels)
        finally:
            generator.set_state(state)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = batch[image_column]
        pixel_values = torch.empty(len(images), 3, height, width, dtype=torch.float32)
        with one_torch_thread():
            for row, value in zip(pixel_values, images, strict=True):
                torch.addcmul(minus_offset, augment_one(value), gain, out=row)
        return {"pixel_values": pixel_values, "labels": torch.as_tensor(batch[label_column])}

    return transform


def make_eval_transform(
    processor: Any,
    image_column: str = "image",
    label_column: str = "label",
    max_megapixels: float | None = None,
) -> Callable[[dict[str, list]], dict[str, Any]]:
    """Batch transform that is exactly what `koin evaluate` does to an image.

    `decode_for_model`, then the image processor `pipeline("image-classification")` applies:
    the training-time evaluation and `koin evaluate` are numerically identical for the same
    model and data.
    """
    budget = pixel_budget(max_megapixels)
    decode_side = model_decode_side(processor)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = []
        for index, value in enumerate(batch[image_column]):
            try:
                images.append(decode_for_model(value, decode_side, budget))
            except UnusableImage as err:
                where = describe_image(value, batch.get("image_id", [None] * (index + 1))[index])
                raise KoinError(f"evaluation image {where} could not be decoded: {err}") from err
        with one_torch_thread():
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.as_tensor(batch[label_column])}

    return transform


def undecoded_images(dataset):
    """The dataset with its image columns handed over as {'bytes', 'path'}, not decoded.

    datasets' own decoding has no pixel budget and clips 16-bit images; with this, images reach
    koin_hf.data.images instead. Changes the features only, not the stored data.
    """
    for name, feature in (dataset.features or {}).items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def apply_transform(dataset, transform: Callable[[dict[str, list]], dict[str, Any]]):
    """Attach a batch transform: lazily on a Dataset, as a batched map on a streamed one.

    Image columns reach the transform undecoded (`undecoded_images`), so the transform decodes
    them with koin-hf's decoder. On a memory-mapped Dataset the transform also hands the pages
    it has read back to the page cache after each batch, so an epoch's resident set does not
    grow with the dataset.
    """
    dataset = undecoded_images(dataset)
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(transform, batched=True, remove_columns=list(dataset.column_names or []))
    dataset.set_transform(releasing_pages(transform, dataset))
    return dataset


def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        # default_collate stacks straight into shared memory inside a DataLoader worker, which
        # saves a copy of the whole batch on its way to the training process.
        "pixel_values": default_collate([example["pixel_values"] for example in examples]),
        "labels": torch.as_tensor([int(example["labels"]) for example in examples]),
    }
