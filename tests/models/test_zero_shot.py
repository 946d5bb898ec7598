"""Zero-shot CLIP scoring and the text-initialised CLIPForImageClassification head.

A tiny random CLIPModel and a byte-level CLIPTokenizer built from a generated vocabulary (no
merges: every byte is a token) stand in for a real checkpoint; nothing is downloaded.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value, load_dataset
from PIL import Image as PILImage
from tinyclip import make_tiny_clip_dir, tiny_tokenizer
from transformers import (
    CLIPConfig,
    CLIPForImageClassification,
    CLIPModel,
    CLIPProcessor,
)

from koin_hf.cli import main
from koin_hf.errors import KoinError
from koin_hf.evaluation.run import evaluate_model
from koin_hf.models.zero_shot import (
    init_head_from_text,
    text_head_weights,
    zero_shot_text_embeddings,
)

NAMES = ["Kim Min-ji", "Lee Seo-yeon", "Park Ji-hoon", "정하늘"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return make_tiny_clip_dir(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def koin_dir(tmp_path_factory) -> Path:
    """A prepared KoIn folder with normal and hard test sets (parquet + README configs)."""
    root = tmp_path_factory.mktemp("koin")
    features = Features(
        {"image": Image(), "label": ClassLabel(names=NAMES), "image_id": Value("string")}
    )
    rng = np.random.default_rng(0)
    readme = ["---", "configs:"]
    for config, per_class in (("normal", 3), ("hard", 2)):
        rows = {"image": [], "label": [], "image_id": []}
        for label in range(len(NAMES)):
            for i in range(per_class):
                buffer = io.BytesIO()
                pixels = rng.integers(0, 255, size=(36, 44, 3), dtype=np.uint8)
                PILImage.fromarray(pixels).save(buffer, format="JPEG")
                rows["image"].append({"bytes": buffer.getvalue(), "path": None})
                rows["label"].append(label)
                rows["image_id"].append(f"{config}/{label}/{i}.jpg")
        (root / config).mkdir()
        Dataset.from_dict(rows, features=features).to_parquet(
            root / config / "test-00000-of-00001.parquet"
        )
        readme += [
            f"- config_name: {config}",
            "  data_files:",
            "  - split: test",
            f"    path: {config}/test-*",
        ]
    (root / "README.md").write_text("\n".join([*readme, "---", ""]), encoding="utf-8")
    return root


def test_text_embeddings_equal_clip_text_embeds(clip_dir):
    embeddings = zero_shot_text_embeddings(clip_dir, NAMES, "a photo of {name}.")
    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir)
    prompts = [f"a photo of {name}." for name in NAMES]
    inputs = processor(
        text=prompts, images=[PILImage.new("RGB", (32, 32))], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected = model(**inputs).text_embeds
    assert embeddings.shape == (len(NAMES), 16)
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)
    # Prompt ensembling averages the normalised embeddings and re-normalises.
    two = zero_shot_text_embeddings(clip_dir, NAMES, ["a photo of {name}.", "{name}"])
    single = zero_shot_text_embeddings(clip_dir, NAMES, "{name}")
    mean = expected + single
    torch.testing.assert_close(two, mean / mean.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)


def test_prompt_template_needs_the_placeholder(clip_dir):
    with pytest.raises(KoinError, match=r"\{name\}"):
        zero_shot_text_embeddings(clip_dir, NAMES, "a photo of {}.")


def test_zero_shot_evaluation_equals_clip_logits(clip_dir, koin_dir, tmp_path):
    template = "a face of {name}"
    results = evaluate_model(
        clip_dir, str(koin_dir), None, 3, tmp_path, zero_shot=True, prompt_template=template, device="cpu"
    )  # fmt: skip
    assert results["mode"] == "zero-shot" and results["prompt_template"] == template
    assert "group" in results["skipped_configs"]
    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir)
    prompts = [template.replace("{name}", name) for name in NAMES]
    for config in ("normal", "hard"):
        data = load_dataset(str(koin_dir), config, split="test")
        images = [image.convert("RGB") for image in data["image"]]
        with torch.no_grad():
            inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
            logits = model(**inputs).logits_per_image.numpy()
        labels = np.array(data["label"])
        rank = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)
        got = results["configs"][config]
        assert got["top1_accuracy"] == pytest.approx(np.mean(rank < 1), abs=1e-9)
        assert got["top3_accuracy"] == pytest.approx(np.mean(rank < 3), abs=1e-9)
    assert (tmp_path / "report.md").read_text(encoding="utf-8").count("zero-shot") >= 1


def test_cli_zero_shot(clip_dir, koin_dir, tmp_path, capsys):
    args = ["evaluate", str(clip_dir), "--zero-shot", "--dataset", str(koin_dir), "--configs", "hard", "--output_dir", str(tmp_path), "--no-plots"]  # fmt: skip
    assert main([*args, "--prompt_template", "{name}"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["configs"]["hard"]["n"] == 8 and metrics["prompt_template"] == ["{name}"]
    assert main([*args, "--prompt_template", "no placeholder"]) == 2
    assert "{name}" in capsys.readouterr().err


def test_head_weights_reproduce_clip_logits_on_the_cls_token(clip_dir):
    """The algebra: with the image's own σ and embedding norm, W x + b is CLIP's zero-shot logit."""
    model = CLIPModel.from_pretrained(clip_dir).eval()
    text = zero_shot_text_embeddings(model, NAMES, tokenizer=tiny_tokenizer())
    pixel_values = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        cls = model.vision_model(pixel_values=pixel_values).last_hidden_state[:, 0]
        image_embeds = model.get_image_features(pixel_values=pixel_values).pooler_output
        expected = model.logit_scale.exp() * torch.nn.functional.normalize(image_embeds) @ text.T
    norm = model.vision_model.post_layernorm
    for i in range(3):
        sigma = torch.sqrt(cls[i].var(unbiased=False) + norm.eps)
        weight, bias = text_head_weights(
            text, model.visual_projection.weight, norm.weight, norm.bias,
            float(model.logit_scale.exp().detach()), float(sigma), float(image_embeds[i].norm()),
        )  # fmt: skip
        torch.testing.assert_close(weight @ cls[i] + bias, expected[i], atol=1e-4, rtol=1e-4)


def test_init_head_from_text(clip_dir):
    classifier = CLIPForImageClassification.from_pretrained(
        clip_dir, num_labels=len(NAMES), id2label=dict(enumerate(NAMES))
    ).eval()
    text = zero_shot_text_embeddings(clip_dir, NAMES)
    before = classifier.classifier.weight.clone()
    init_head_from_text(classifier, text)  # the CLIPModel comes from classifier.name_or_path
    assert not torch.equal(before, classifier.classifier.weight)

    # For the calibration image (default: mean colour = zeros), the head's logits are CLIP's
    # zero-shot logits computed on the mean patch token, which is what the head sees.
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    gray = torch.zeros(1, 3, 32, 32)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for calibration in (None, images[:1]):
            if calibration is not None:
                init_head_from_text(
                    classifier, text, clip_model=clip, calibration_pixel_values=calibration
                )
            pixels = gray if calibration is None else calibration
            patches = clip.vision_model(pixel_values=pixels).last_hidden_state[:, 1:].mean(dim=1)
            embed = clip.visual_projection(clip.vision_model.post_layernorm(patches))
            expected = clip.logit_scale.exp() * torch.nn.functional.normalize(embed) @ text.T
            got = classifier(pixel_values=pixels).logits
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_init_head_errors(clip_dir):
    config = CLIPConfig.from_pretrained(clip_dir)
    config.num_labels = len(NAMES)
    from_config = CLIPForImageClassification(config)  # no checkpoint to take the projection from
    text = zero_shot_text_embeddings(clip_dir, NAMES)
    with pytest.raises(KoinError, match="clip_model="):
        init_head_from_text(from_config, text)
    with pytest.raises(KoinError, match="3 class text embeddings for a head with 4 labels"):
        init_head_from_text(from_config, text[:3], clip_model=clip_dir)


def test_a_fine_tuned_classifier_dir_is_refused_for_zero_shot(clip_dir, tmp_path):
    # It loads as a CLIPModel with a random text tower; scoring with it would be noise.
    CLIPForImageClassification.from_pretrained(clip_dir, num_labels=2).save_pretrained(tmp_path)
    with pytest.raises(KoinError, match="lacks CLIP's text tower"):
        zero_shot_text_embeddings(tmp_path, NAMES, tokenizer=tiny_tokenizer())
