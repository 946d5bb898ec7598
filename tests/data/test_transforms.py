"""koin_hf.data.transforms: the fast decode, the augmentation clock, fused normalisation, eval = pipeline."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from rawkoin import exif_rotated_jpeg, jpeg_bytes, png_bytes
from torchvision.transforms import v2
from transformers import ViTImageProcessor

from koin_hf.data import transforms
from koin_hf.errors import KoinError

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


def test_both_transforms_refuse_an_image_over_the_pixel_budget(monkeypatch):
    bomb = png_bytes(9000, 8000, 8, 0, b"")  # 72 MP declared, no pixel data
    batch = {"image": [{"bytes": bomb, "path": None}], "label": [0], "image_id": ["x/bomb.png"]}
    with pytest.raises(KoinError, match="training image could not be decoded: image too large"):
        transforms.make_train_transform(PROCESSOR)(batch)
    with pytest.raises(
        KoinError, match="evaluation image 'x/bomb.png' could not be decoded: image too large"
    ):
        transforms.make_eval_transform(PROCESSOR)(batch)
    # Training's budget comes from the environment; a bad value fails when the transform is made.
    monkeypatch.setenv("KOIN_MAX_MEGAPIXELS", "100")
    with pytest.raises(KoinError, match="corrupt or truncated"):  # decoding now gets to try
        transforms.make_train_transform(PROCESSOR)(batch)
    monkeypatch.setenv("KOIN_MAX_MEGAPIXELS", "lots")
    with pytest.raises(KoinError, match=r"\$KOIN_MAX_MEGAPIXELS must be a positive number"):
        transforms.make_train_transform(PROCESSOR)


def test_decoded_16_bit_images_from_a_dataset_are_scaled_not_white():
    array = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(3, axis=0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    decoded = Image.open(io.BytesIO(buffer.getvalue()))  # what datasets hands over when decoding
    pixels = transforms._decode(decoded, 32)
    assert pixels[0, 0].tolist() == [0, 127, 255]


def test_apply_transform_hands_image_columns_over_undecoded():
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": jpeg_bytes(Image.new("RGB", (8, 8))), "path": None}], "label": [0]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    seen = []
    transforms.apply_transform(data, lambda batch: seen.append(batch["image"][0]) or batch)[0]
    assert isinstance(seen[0], dict) and seen[0]["bytes"].startswith(b"\xff\xd8")
