"""TimmEvalPixels: a timm processor's exact pixels with PIL and numpy alone, and koin evaluate's
scoring loop that uses it on a second thread giving the logits pipeline() gives for the photos
as koin-hf decodes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from koin_hf.data.timm_pixels import TimmEvalPixels
from koin_hf.data.transforms import decode_for_model, model_decode_side
from koin_hf.evaluation.scoring import ImageScorer, score_config
from koin_hf.models.loading import load_model_and_processor


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    """A tiny random timm-wrapper model (the default family's processor) saved as a folder."""
    model, processor, _ = load_model_and_processor("lite0-tiny", ["Ann", "Bo", "Cy"], seed=0)
    folder = tmp_path_factory.mktemp("lite0") / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, processor


def _photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(256, 327), (327, 256), (256, 256), (300, 230), (100, 80), (513, 257), (224, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def test_the_pixels_are_the_processors_bit_for_bit(lite0):
    _, processor = lite0
    fast = TimmEvalPixels.for_processor(processor)
    assert fast is not None
    photos = _photos()
    expected = processor(images=photos, return_tensors="pt")["pixel_values"].numpy()
    got = fast(photos)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_other_processors_keep_their_own_path():
    _, vit_processor, _ = load_model_and_processor("vit-tiny", ["a", "b"], seed=0)
    assert TimmEvalPixels.for_processor(vit_processor) is None
    _, processor, _ = load_model_and_processor("lite0-tiny", ["a", "b"], seed=0)
    processor.val_transforms.transforms.append(processor.val_transforms.transforms[-1])
    assert TimmEvalPixels.for_processor(processor) is None  # not the shape it knows


def test_scoring_with_the_next_batch_made_on_a_thread_gives_pipelines_logits(lite0, tmp_path):
    import datasets

    folder, _ = lite0
    paths = []
    for index, photo in enumerate(_photos() * 3):  # 21 photos: batches of 4 and a short one
        path = tmp_path / f"{index}.jpg"
        photo.save(path, quality=92)
        paths.append(str(path))
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["Ann", "Bo", "Cy"])}
    )
    data = datasets.Dataset.from_dict(
        {"image": paths, "label": [i % 3 for i in range(len(paths))]}, features=features
    )
    scorer = ImageScorer(folder, device="cpu")
    scored = score_config(scorer, "normal", data, batch_size=4)
    classifier = pipeline("image-classification", model=str(folder), device="cpu")
    side = model_decode_side(classifier.image_processor)
    for path, logits in zip(paths, scored.logits, strict=True):
        # pipeline()'s processor and model on the photo as koin-hf decodes it (koin predict's path)
        photo = decode_for_model(path, side)
        inputs = classifier.image_processor(images=photo, return_tensors="pt")
        with torch.no_grad():
            expected = classifier.model(**inputs).logits[0].numpy()
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
