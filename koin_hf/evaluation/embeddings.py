"""Image embeddings: what a classifier's head reads, computed once per backbone and dataset split.

The embedding of an image is the input of the model's linear classification head (the family's
`head_modules` in the registry): EfficientNet/Lite0's globally pooled features, ViT's [CLS]
token, CLIP's mean-pooled patch tokens (what `CLIPForImageClassification`'s head reads, not the
projected `image_embeds`, so that a probe fitted on them drops into the same model folder). It is
captured by a forward hook on the head while the pipeline-loaded model runs, so the features are
exactly the ones the saved model turns into logits: `logits = embedding @ W.T + b`.

Embeddings are cached as a parquet file (columns `image_id`, `label`, `embedding`) under
`$KOIN_HF_CACHE/embeddings/<backbone fingerprint>/<data fingerprint>/` (or under
`$KOIN_HF_EMBEDDINGS_CACHE`), readable by
`load_dataset("parquet", data_files=...)`. The backbone fingerprint hashes every weight of the
model except its head, plus the image processor's settings: a linear probe, a calibrated model
and a model with enrolled people share the backbone of the model they came from, and so its
cached embeddings. The data fingerprint is the `datasets` fingerprint of the split (which
follows its files and any select/filter applied to it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from koin_hf.data.default_dataset import default_cache_dir
from koin_hf.errors import KoinError
from koin_hf.evaluation.scoring import ImageScorer, image_batches
from koin_hf.models.loading import resolve_checkpoint
from koin_hf.models.registry import family_of

EMBEDDINGS_FILE = "embeddings.parquet"
META_FILE = "meta.json"
# Keys of the processor / timm settings that name the head, not the pre-processing.
_HEAD_SETTINGS = ("num_classes", "label_names", "id2label", "label2id", "num_labels")


@dataclass
class Embeddings:
    """One split's embeddings, in dataset order."""

    features: np.ndarray  # (n, dim) float32
    labels: np.ndarray  # (n,) int64 dataset labels (-1: an identity outside the ClassLabel)
    image_ids: list[str]
    class_names: list[str]  # the dataset's ClassLabel names
    name: str = ""  # "config/split", for messages
    path: Path | None = None  # the cached parquet file
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> Embeddings:
        index = np.flatnonzero(mask)
        return Embeddings(
            self.features[index],
            self.labels[index],
            [self.image_ids[i] for i in index],
            self.class_names,
            self.name,
            self.path,
        )


def head_linear(model: torch.nn.Module) -> torch.nn.Linear:
    """The model's linear classification head (the registry names it per family)."""
    family = family_of(model.config)
    for name, module in model.named_modules():
        named = any(name == s or name.endswith("." + s) for s in family.head_modules)
        if named and isinstance(module, torch.nn.Linear):
            return module
    raise KoinError(
        f"no linear classification head ({', '.join(family.head_modules)}) found in the "
        f"{family.name} model: embeddings and probes need one."
    )


@contextlib.contextmanager
def captured_head_inputs(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """While inside, every forward of `model` appends its head's input (the embedding), float32
    on the CPU, to the yielded list: embeddings read off the forward pass that makes the logits,
    at no extra cost."""
    captured: list[torch.Tensor] = []
    handle = head_linear(model).register_forward_pre_hook(
        lambda _module, inputs: captured.append(inputs[0].detach().float().cpu())
    )
    try:
        yield captured
    finally:
        handle.remove()


def head_parameters(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(W (n_labels, dim), b (n_labels,)) of the head, float32 numpy."""
    head = head_linear(model)
    weight = head.weight.detach().float().cpu().numpy()
    bias = (
        head.bias.detach().float().cpu().numpy()
        if head.bias is not None
        else np.zeros(weight.shape[0], np.float32)
    )
    return weight, bias


def _head_parameter_names(model: torch.nn.Module) -> set[str]:
    head = head_linear(model)
    names = {f"{n}" for n, p in model.named_parameters() if any(p is q for q in head.parameters())}
    return names


def _settings_digest(settings: dict) -> str:
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in _HEAD_SETTINGS}
        return value

    return json.dumps(clean(settings), sort_keys=True, default=str)


def backbone_fingerprint(model: torch.nn.Module, image_processor) -> str:
    """sha256 of every weight except the head's, and of the pre-processing settings."""
    digest = hashlib.sha256()
    skip = _head_parameter_names(model)
    for name, tensor in sorted(model.state_dict().items()):
        if name in skip:
            continue
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    digest.update(_settings_digest(image_processor.to_dict()).encode())
    pretrained_cfg = getattr(model.config, "pretrained_cfg", None)
    if pretrained_cfg:
        digest.update(_settings_digest(dict(pretrained_cfg)).encode())
    return digest.hexdigest()


def data_fingerprint(data) -> str:
    """The `datasets` fingerprint of a split (follows its files and every transform applied)."""
    fingerprint = getattr(data, "_fingerprint", None)
    if not fingerprint:
        raise KoinError("embeddings are cached per dataset fingerprint: pass a datasets.Dataset.")
    return str(fingerprint)


class Embedder:
    """A pipeline-loaded model whose head input is captured: image batches -> embeddings."""

    def __init__(self, model: str | Path | ImageScorer, device=None) -> None:
        if not isinstance(model, ImageScorer):
            model = ImageScorer(resolve_checkpoint(str(model)), device=device)
        self.scorer = model
        if self.scorer.zero_shot:
            raise KoinError("embeddings are taken from a classifier, not a zero-shot CLIPModel.")
        self.model = self.scorer.model
        self.head = head_linear(self.model)
        self.fingerprint = backbone_fingerprint(self.model, self.scorer.image_processor)

    @property
    def labels(self) -> list[str]:
        return self.scorer.labels

    @torch.inference_mode()
    def embed_pixels(self, pixel_values: torch.Tensor) -> np.ndarray:
        """(batch, dim) float32 head inputs for preprocessed pixel values."""
        with captured_head_inputs(self.model) as captured:
            self.scorer.forward(pixel_values)
        features = captured[-1]
        return features.reshape(features.shape[0], -1).numpy()

    def embed_images(self, images) -> np.ndarray:
        """(n, dim) embeddings of PIL images (or files), decoded as everywhere in koin-hf."""
        return self.embed_pixels(self.scorer.preprocess(images))

    def cache_dir(self, data, cache_root: str | Path | None = None) -> Path:
        root = Path(
            cache_root
            or os.environ.get("KOIN_HF_EMBEDDINGS_CACHE")
            or default_cache_dir() / "embeddings"
        )
        return root / self.fingerprint[:20] / data_fingerprint(data)[:20]

    def embed_split(
        self,
        data,
        name: str = "",
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        max_megapixels: float | None = None,
        cache_root: str | Path | None = None,
        refresh: bool = False,
    ) -> Embeddings:
        """The split's embeddings, from the cache or computed (with a progress bar) and cached."""
        if batch_size < 1:
            raise KoinError(f"--batch_size must be at least 1, got {batch_size}.")
        folder = self.cache_dir(data, cache_root)
        class_names = list(data.features["label"].names)
        if not refresh and (folder / EMBEDDINGS_FILE).is_file():
            return read_embeddings(folder, class_names, name)
        chunks, labels, image_ids = [], [], []
        loader = image_batches(
            self.scorer.image_processor, data, batch_size, num_workers, max_megapixels
        )
        with tqdm(total=len(data), desc=f"embed {name}".strip(), unit="img") as progress:
            for pixel_values, batch_labels, batch_ids, error in loader:
                if error:
                    raise KoinError(f"{name}: {error}")
                chunks.append(self.embed_pixels(pixel_values))
                start = len(labels)
                labels.extend(batch_labels)
                image_ids.extend(
                    i if i is not None else str(start + n) for n, i in enumerate(batch_ids)
                )
                progress.update(len(batch_labels))
        dim = self.head.in_features
        features = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
        embeddings = Embeddings(
            features.astype(np.float32), np.asarray(labels, np.int64), image_ids, class_names, name
        )
        write_embeddings(folder, embeddings, {"backbone_fingerprint": self.fingerprint})
        embeddings.path = folder / EMBEDDINGS_FILE
        return embeddings


def write_embeddings(folder: Path, embeddings: Embeddings, meta: dict) -> None:
    """embeddings.parquet and meta.json, written to temporary names and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    n, dim = embeddings.features.shape
    flat = pa.array(embeddings.features.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "image_id": pa.array(embeddings.image_ids, type=pa.string()),
            "label": pa.array(embeddings.labels, type=pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    tmp = folder / f".{EMBEDDINGS_FILE}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    info = {
        **meta,
        "name": embeddings.name,
        "rows": n,
        "dim": dim,
        "class_names": embeddings.class_names,
    }
    (folder / META_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, folder / EMBEDDINGS_FILE)


def read_embeddings(
    folder: Path, class_names: list[str] | None = None, name: str = ""
) -> Embeddings:
    """Embeddings back from a cache folder."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder / EMBEDDINGS_FILE)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    features = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    if class_names is None:
        class_names = json.loads((folder / META_FILE).read_text())["class_names"]
    return Embeddings(
        features.astype(np.float32, copy=False),
        table.column("label").to_numpy().astype(np.int64),
        [str(i) for i in table.column("image_id").to_pylist()],
        list(class_names),
        name,
        folder / EMBEDDINGS_FILE,
    )


def logits_from_embeddings(
    features: np.ndarray, weight: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """What the linear head computes: (n, n_labels) float32 logits."""
    return (features.astype(np.float32) @ weight.T.astype(np.float32) + bias).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Datasets


def dataset_for(model: str | Path, dataset: str | Path | None) -> str:
    """`dataset`, or the one MODEL was trained on (its run record)."""
    if dataset:
        return str(dataset)
    from koin_hf.evaluation.run import dataset_from_run_record

    try:
        return dataset_from_run_record(model)
    except KoinError as err:
        raise KoinError(f"pass --dataset: {err}") from None


def training_config_for(model: str | Path) -> str:
    """The config MODEL was trained on (its run record's `dataset_config`; "normal" without
    one): calibrate, enroll and open-set evaluation take prototypes and the validation carve
    from its train split, so a face model (`normal-faces`) is calibrated on face crops, with the
    very validation rows its run held out."""
    from koin_hf.run_record import RunRecord

    record = RunRecord.load_if_present(model) if Path(str(model)).is_dir() else None
    return (record.dataset_config if record is not None else None) or "normal"


def embed_configs(
    embedder: Embedder,
    dataset: str | Path,
    configs: Sequence[str] | None = None,
    *,
    splits: Sequence[str] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    max_megapixels: float | None = None,
    refresh: bool = False,
) -> dict[str, Embeddings]:
    """{"config/split": Embeddings} for every split of each config (all configs when None)."""
    from koin_hf.data.loading import config_names, load_prepared

    available = config_names(dataset)
    wanted = list(configs) if configs else available
    missing = [c for c in wanted if c not in available]
    if missing:
        raise KoinError(
            f"dataset {dataset} has no config {', '.join(map(repr, missing))}; "
            f"available: {', '.join(available)}"
        )
    found: dict[str, Embeddings] = {}
    for config in wanted:
        for split, data in load_prepared(dataset, config).items():
            if splits is not None and split not in splits:
                continue
            name = f"{config}/{split}"
            found[name] = embedder.embed_split(
                data,
                name,
                batch_size=batch_size,
                num_workers=num_workers,
                max_megapixels=max_megapixels,
                refresh=refresh,
            )
    return found


def _rows(embeddings: Embeddings):
    import datasets

    features = datasets.Features(
        {"label": datasets.ClassLabel(names=embeddings.class_names), "row": datasets.Value("int64")}
    )
    return datasets.Dataset.from_dict(
        {"label": embeddings.labels.tolist(), "row": list(range(len(embeddings)))},
        features=features,
    )


def carve_validation(
    train: Embeddings, fraction: float, seed: int, shots_per_class: int | None = None
) -> tuple[Embeddings, Embeddings]:
    """(train, validation) embeddings, drawn exactly as train.py draws them from the train split:
    the same seeded stratified carve, then (with `shots_per_class`) the same few-shot sample."""
    from koin_hf.data.sampling import sample_few_shot, stratified_split

    kept, held = stratified_split(_rows(train), fraction, seed)
    if shots_per_class:
        kept = sample_few_shot(kept, shots_per_class, seed)
    keep_mask = np.zeros(len(train), bool)
    keep_mask[kept["row"]] = True
    held_mask = np.zeros(len(train), bool)
    held_mask[held["row"]] = True
    return train.subset(keep_mask), train.subset(held_mask)
