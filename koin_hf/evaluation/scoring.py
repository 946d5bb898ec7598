"""Scoring images: any pipeline-loadable classifier (or a CLIP model zero-shot) to logits.

The model is loaded once, the way `pipeline("image-classification")` loads it (so any
pipeline-loadable model works: a koin-hf output dir, a Hub id, a timm wrapper), and then run in
batches with the pipeline's own image processor: same preprocessing, same logits, faster.

Labels are matched BY NAME (Unicode NFC, surrounding spaces ignored) between the model's
`config.id2label` and the dataset's `ClassLabel` names, never by index: a model trained with another
class order, or with more classes than the dataset, still scores correctly. A model with extra
labels is ranked among ALL its labels, as `pipeline()` would show it: predicting a class that is not
in the dataset counts as a miss. A dataset class the model does not know is an error.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from koin_hf.data.images import UnusableImage, pixel_budget
from koin_hf.data.mapped_pages import releasing_pages
from koin_hf.data.timm_pixels import TimmEvalPixels
from koin_hf.data.transforms import (
    decode_for_model,
    describe_image,
    model_decode_side,
    one_torch_thread,
    undecoded_images,
)
from koin_hf.errors import KoinError
from koin_hf.models.loading import use_family_memory_format
from koin_hf.models.model_folder import check_model_folder
from koin_hf.models.zero_shot import (
    DEFAULT_PROMPT_TEMPLATE,
    load_dual_encoder,
    zero_shot_image_logits,
    zero_shot_text_embeddings,
)


@dataclass
class ScoredConfig:
    """Everything one config's inference produced; metrics and reports are computed from this."""

    config: str
    class_names: list[str]  # the dataset's ClassLabel names, in dataset order
    model_labels: list[str]  # the model's labels, in logit order
    logits: np.ndarray  # (n, n_model_labels) float32
    references: np.ndarray  # (n,) index of the true class among model labels
    dataset_labels: np.ndarray  # (n,) index of the true class among dataset classes
    image_ids: list[str] = field(default_factory=list)

    def probabilities(self) -> np.ndarray:
        """Softmax scores, the numbers `pipeline()` reports."""
        shifted = self.logits - self.logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


def normalize_name(name: str) -> str:
    # Korean names from macOS file systems arrive decomposed (NFD); Hub configs are usually NFC.
    return unicodedata.normalize("NFC", str(name)).strip()


def match_labels(model_labels: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Index of each dataset class among the model's labels; KoinError naming any missing ones."""
    index: dict[str, int] = {}
    for i, label in enumerate(model_labels):
        key = normalize_name(label)
        if key in index:
            raise KoinError(f"the model has the label {label!r} twice; labels must be unique.")
        index[key] = i
    missing = [name for name in class_names if normalize_name(name) not in index]
    if missing:
        shown = ", ".join(repr(name) for name in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        hint = ""
        if all(str(label).startswith("LABEL_") for label in model_labels):
            hint = " (its labels are generic LABEL_i: was it saved without id2label?)"
        raise KoinError(
            f"the model's labels do not cover the dataset: {len(missing)} of {len(class_names)} "
            f"classes missing from config.id2label{hint}: {shown}{more}."
        )
    return np.array([index[normalize_name(name)] for name in class_names], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Loading the model and scoring images


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ImageScorer:
    """Loads a model once and turns batches of PIL images into logits over its labels."""

    def __init__(
        self,
        model_dir_or_id: str | Path,
        zero_shot: bool = False,
        prompt_template: str | Sequence[str] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.source = str(model_dir_or_id)
        self.zero_shot = zero_shot
        self.device = torch.device(device) if device is not None else default_device()
        check_model_folder(self.source)
        try:
            if zero_shot:
                self._load_dual_encoder(prompt_template)
            else:
                self._load_classifier()
        except (OSError, ValueError) as err:
            if isinstance(err, KoinError):
                raise
            raise KoinError(f"cannot load the model {self.source!r}: {err}") from err

    def _load_classifier(self) -> None:
        from transformers import pipeline

        # Built through pipeline() so model class, image processor (fast or slow) and dtype are
        # exactly the ones `pipeline("image-classification", model=...)` users get.
        from koin_hf.models.loading import quiet_model_io

        with quiet_model_io():
            pipe = pipeline("image-classification", model=self.source, device=self.device)
        self.model = use_family_memory_format(pipe.model).eval()
        self.image_processor = pipe.image_processor
        id2label = self.model.config.id2label
        self.labels = [id2label[i] for i in range(len(id2label))]

    def _load_dual_encoder(self, prompt_template: str | Sequence[str] | None) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        self.model = load_dual_encoder(self.source).to(self.device)
        self.image_processor = AutoImageProcessor.from_pretrained(self.source)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.prompt_template = prompt_template or DEFAULT_PROMPT_TEMPLATE
        self.labels: list[str] = []
        self._text_embeddings = None

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Zero-shot: the classes ARE the dataset's names, embedded once as prompts."""
        if not self.zero_shot or list(class_names) == self.labels:
            return
        self.labels = list(class_names)
        self._text_embeddings = zero_shot_text_embeddings(
            self.model, self.labels, self.prompt_template, tokenizer=self.tokenizer
        ).to(self.device)

    def preprocess(self, images: Sequence) -> torch.Tensor:
        return preprocess_images(self.image_processor, images)

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor) -> np.ndarray:
        """(batch, n_labels) float32 logits."""
        pixel_values = pixel_values.to(self.device, self.model.dtype)
        if self.zero_shot:
            out = zero_shot_image_logits(self.model, pixel_values, self._text_embeddings)
        else:
            out = self.model(pixel_values=pixel_values).logits
        return out.float().cpu().numpy()

    def logits(self, images: Sequence) -> np.ndarray:
        """(len(images), n_labels) float32 logits for PIL images."""
        return self.forward(self.preprocess(images))


def preprocess_images(
    image_processor,
    images: Sequence,
    max_megapixels: float | None = None,
    image_ids: Sequence[str | None] | None = None,
) -> torch.Tensor:
    """Pixel values for images (files, datasets values or PIL images), decoded by koin-hf's decoder.

    `decode_for_model` then the pipeline's own image processor: a PIL image from it gets exactly
    these pixel values from `pipeline()`. An image that cannot be decoded (corrupt, over the
    pixel budget) is a KoinError naming it.
    """
    decode_side = model_decode_side(image_processor)
    rgb = []
    for index, image in enumerate(images):
        try:
            rgb.append(decode_for_model(image, decode_side, max_megapixels))
        except UnusableImage as err:
            where = describe_image(image, image_ids[index] if image_ids else None)
            raise KoinError(f"image {where} cannot be decoded: {err}") from err
    fast = TimmEvalPixels.for_processor(image_processor)
    if fast is not None:  # the processor's exact pixels, without a torch op (timm_pixels.py)
        return torch.from_numpy(fast(rgb))
    # Small per-image ops on two threads stall when the cores are shared (30 ms vs 1 ms per
    # image measured by benchmarks/bench_inference.py), so pre-processing runs on one.
    with one_torch_thread():
        return image_processor(images=rgb, return_tensors="pt")["pixel_values"]


def _prefetched(batches: Iterable[Any]) -> Iterator[Any]:
    """`batches`, each made on a second thread while the caller works on the one before.

    Used only when making a batch runs no torch op (`TimmEvalPixels`): decoding and PIL
    resizing release the GIL, so the next batch is ready when the forward ends, and torch's
    thread pool is left to the forward alone.
    """
    from concurrent.futures import ThreadPoolExecutor

    done = object()
    iterator = iter(batches)
    with ThreadPoolExecutor(1, thread_name_prefix="koin-prefetch") as pool:
        pending = pool.submit(next, iterator, done)
        while True:
            batch = pending.result()
            if batch is done:
                return
            pending = pool.submit(next, iterator, done)
            yield batch


class _Batches:
    """DataLoader collate: decode + preprocess rows in the loader's workers, not the main loop.

    Holds only the image processor, never the model, so workers touch no GPU state. A decoding
    error comes back as a message, not an exception: a DataLoader worker would wrap it in its
    own traceback text.
    """

    def __init__(self, image_processor, max_megapixels: float | None = None) -> None:
        self.image_processor = image_processor
        self.max_megapixels = max_megapixels

    def __call__(
        self, rows: list[dict]
    ) -> tuple[torch.Tensor | None, list[int], list[str | None], str | None]:
        image_ids = [row.get("image_id") for row in rows]
        try:
            pixel_values = preprocess_images(
                self.image_processor, [row["image"] for row in rows], self.max_megapixels, image_ids
            )
        except KoinError as err:
            return None, [], image_ids, str(err)
        return pixel_values, [int(row["label"]) for row in rows], image_ids, None


def image_batches(
    image_processor,
    data,
    batch_size: int = 32,
    num_workers: int = 0,
    max_megapixels: float | None = None,
) -> Iterable[tuple[torch.Tensor | None, list[int], list[str | None], str | None]]:
    """Batches `(pixel_values, labels, image_ids, error)` of a dataset, in dataset order.

    Images are decoded by koin-hf's decoder from their stored bytes and preprocessed by the
    model's own image processor, in `num_workers` DataLoader processes when above 0. With 0
    and a timm model, the next batch is made on a second thread while the caller runs the
    model on this one (`_prefetched`).
    """
    columns = [c for c in ("image", "label", "image_id") if c in data.column_names]
    loader = torch.utils.data.DataLoader(
        undecoded_images(data.select_columns(columns)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        # Hands the dataset's memory-mapped pages back after each batch, as training does.
        collate_fn=releasing_pages(_Batches(image_processor, max_megapixels), data),
    )
    if num_workers == 0 and TimmEvalPixels.for_processor(image_processor) is not None:
        return _prefetched(loader)
    return loader


def score_config(
    scorer: ImageScorer,
    config: str,
    data,
    batch_size: int = 32,
    num_workers: int = 0,
    max_megapixels: float | None = None,
) -> ScoredConfig:
    """Run the model over one config's test set, batched, with a progress bar.

    `num_workers` > 0 decodes and preprocesses images in that many DataLoader processes while the
    model runs, which keeps a GPU busy; the results are the same. Images are decoded by koin-hf's
    decoder from their stored bytes (never by datasets), within the pixel budget `max_megapixels`.
    """
    if batch_size < 1:
        raise KoinError(f"--batch_size must be at least 1, got {batch_size}.")
    pixel_budget(max_megapixels)  # a bad value fails before any image is read
    class_names = list(data.features["label"].names)
    scorer.set_class_names(class_names)
    to_model = match_labels(scorer.labels, class_names)
    loader = image_batches(scorer.image_processor, data, batch_size, num_workers, max_megapixels)
    chunks: list[np.ndarray] = []
    labels: list[int] = []
    image_ids: list[str] = []
    with tqdm(total=len(data), desc=f"evaluate {config}", unit="img") as progress:
        for pixel_values, batch_labels, batch_ids, error in loader:
            if error:
                raise KoinError(f"{config}: {error}")
            chunks.append(scorer.forward(pixel_values))
            start = len(labels)
            labels.extend(batch_labels)
            image_ids.extend(
                i if i is not None else str(start + n) for n, i in enumerate(batch_ids)
            )
            progress.update(len(batch_labels))
    dataset_labels = np.asarray(labels, dtype=np.int64)
    n_labels = len(scorer.labels)
    return ScoredConfig(
        config=config,
        class_names=class_names,
        model_labels=list(scorer.labels),
        logits=np.concatenate(chunks) if chunks else np.zeros((0, n_labels), np.float32),
        references=to_model[dataset_labels],
        dataset_labels=dataset_labels,
        image_ids=image_ids,
    )


def top_predictions(scored: ScoredConfig, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, top) of the best model labels and their softmax scores, in pipeline() order."""
    probabilities = scored.probabilities()
    # A stable sort on the negated logits keeps ties in label order, as pipeline()'s sort does.
    order = np.argsort(-scored.logits, axis=1, kind="stable")[:, :top]
    return order, np.take_along_axis(probabilities, order, axis=1)
