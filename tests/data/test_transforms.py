"""koin_hf.data.transforms: the fast decode, the augmentation clock, fused normalisation, eval = pipeline."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from rawkoin import exif_rotated_jpeg, jpeg_bytes
from torchvision.transforms import v2
from transformers import ViTImageProcessor

from koin_hf.data import transforms

PROCESSOR = ViTImageProcessor(
    size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3]
)


def _pillow_upright(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as image:
        return v2.functional.pil_to_tensor(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_jpeg_decode_is_pillow_pixel_for_pixel(orientation):
    if transforms.decode_jpeg is None:
        pytest.skip("this torchvision has no JPEG decoder: Pillow is the only path")
    data = exif_rotated_jpeg(orientation)
    fast = transforms._decode_small_rgb_jpeg(data, min_side=32)
    assert fast is not None and fast.dtype == torch.uint8
    assert torch.equal(fast, _pillow_upright(data))


def test_fast_decode_leaves_what_it_cannot_do_to_pillow():
    grey = jpeg_bytes(Image.new("L", (40, 40), 128))
    large = jpeg_bytes(Image.new("RGB", (200, 200)))  # more than twice what the crop needs
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    for data in (grey, large, png.getvalue(), b"\xff\xd8\xff not really a jpeg"):
        assert transforms._decode_small_rgb_jpeg(data, min_side=32) is None


def _rows(count: int = 4) -> dict[str, list]:
    rng = np.random.default_rng(0)
    images = [
        {
            "bytes": jpeg_bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))),
            "path": None,
        }
        for _ in range(count)
    ]
    return {"image": images, "label": list(range(count))}


def test_train_transform_is_keyed_on_seed_epoch_and_image():
    clock = transforms.AugmentationClock(seed=7)
    transform = transforms.make_train_transform(PROCESSOR, clock=clock)
    first = transform(_rows())
    assert first["pixel_values"].shape == (4, 3, 32, 32)
    assert first["pixel_values"].dtype == torch.float32
    assert first["labels"].tolist() == [0, 1, 2, 3]
    torch.manual_seed(123)  # whatever else drew random numbers does not matter
    assert torch.equal(transform(_rows())["pixel_values"], first["pixel_values"])
    clock.epoch = 1
    assert not torch.equal(transform(_rows())["pixel_values"], first["pixel_values"])


def test_fused_normalisation_equals_to_dtype_then_normalize():
    """With the crop covering the whole square image, the only freedom left is the flip."""
    rows = _rows(2)
    transform = transforms.make_train_transform(PROCESSOR, scale=(1.0, 1.0))
    fused = transform(rows)["pixel_values"]
    reference = v2.Compose(
        [
            v2.Resize((32, 32), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(PROCESSOR.image_mean, PROCESSOR.image_std),
        ]
    )
    for got, row in zip(fused, rows["image"], strict=True):
        expected = reference(_pillow_upright(row["bytes"]))
        closest = min(
            (got - candidate).abs().max().item() for candidate in (expected, expected.flip(-1))
        )
        assert closest < 1e-5


def test_eval_transform_is_exactly_the_image_processor():
    images = [Image.new("RGB", (50, 40), (200, 10, 10)), Image.new("RGB", (40, 50), (10, 200, 10))]
    out = transforms.make_eval_transform(PROCESSOR)({"image": images, "label": [1, 0]})
    assert torch.equal(
        out["pixel_values"], PROCESSOR(images=images, return_tensors="pt")["pixel_values"]
    )
    assert out["labels"].tolist() == [1, 0]


def test_collate_stacks_a_batch():
    examples = [{"pixel_values": torch.full((3, 2, 2), float(i)), "labels": i} for i in range(3)]
    batch = transforms.collate(examples)
    assert batch["pixel_values"].shape == (3, 3, 2, 2)
    assert batch["labels"].tolist() == [0, 1, 2]
    assert batch["pixel_values"][2].eq(2.0).all()
