"""`koin enroll` / `koin unenroll`: add or remove a person without gradient training.

A new person is a new row of the linear head, built from a few photos:

    d = normalise(mean(embeddings of the photos) - mu)      mu: the mean training embedding
    w_new = a * d,   b_new = beta - a * (d . mu)            so  logit_new(x) = a * d.(x - mu) + beta

The direction is the person's prototype in embedding space, centred on the training mean (every
embedding shares a large common component; an uncentred prototype would be close to everyone).
The scale `a` and offset `beta` keep the new logit comparable with the trained classes': on the
person's own photos (leave-one-out prototypes, so not flattered by their own photo) it averages
the logit a trained class gets on its own validation photos, and on other people's validation
photos the logit a trained class gets on photos of somebody else. The offset is then lowered, where needed, until no
trained person's validation photo scores higher for the new person than for themself. The other
rows are untouched,
so a trained class's logits do not move; only images that now score higher for the new person
change their answer.

The folder stays an ordinary pipeline-ready model: the head grows by one row, `id2label` gets the
name, and `config.json` records the enrolment under `koin_enrolled`. A calibrated model keeps
its temperature (already in the other rows; the new row is set from the calibrated logits) and
its threshold. `unenroll` removes a row (any label: a trained person can be removed too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from koin_hf.errors import KoinError
from koin_hf.evaluation.open_set import Prototypes
from koin_hf.models.loading import quiet_model_io

ENROLLED_KEY = "koin_enrolled"


def _labels(model) -> list[str]:
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]


def set_head(model, weight: np.ndarray, bias: np.ndarray, labels: Sequence[str]) -> None:
    """Replace the linear head by one with these rows and these labels (config included)."""
    from koin_hf.evaluation.embeddings import head_linear

    old = head_linear(model)
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=True)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(torch.as_tensor(weight))
        new.bias.copy_(torch.as_tensor(bias))
    for name, module in model.named_modules():
        if module is old:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
            break
    config = model.config
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.num_labels = len(labels)
    if hasattr(config, "label_names"):
        config.label_names = list(labels)


def _image_paths(images: Sequence[str | Path]) -> list[str]:
    from koin_hf.data.images import UnusableImage, check_image

    paths = []
    for image in images:
        path = Path(image)
        if not path.is_file():
            raise KoinError(f"image {str(image)!r} does not exist.")
        try:
            check_image(str(path))
        except UnusableImage as err:
            raise KoinError(f"cannot read image {str(image)!r}: {err}") from err
        paths.append(str(path))
    return paths


def _model_inputs(paths: list[str], config: str, dataset: str) -> tuple[list, list[str]]:
    """What the model is given for each photo, and the photos left out (no face found).

    A whole-photo model gets the files; a face model the largest face of each, cut with the
    dataset's face settings (koin_hf.faces.portrait). No face in any photo is an error.
    """
    from koin_hf.faces.configs import is_face_config

    if not is_face_config(config):
        return list(paths), []
    from koin_hf.faces.portrait import FaceCropSettings, portrait_crops

    crops, without_face = portrait_crops(paths, FaceCropSettings.of_dataset(dataset))
    if not crops:
        raise KoinError(
            f"the model was trained on face crops ({config}) and no face was found in any of the "
            f"{len(paths)} photo(s); use photos where the face is clearly visible."
        )
    return crops, without_face


def enrollment_row(
    photos: np.ndarray,
    train_mean: np.ndarray,
    validation: np.ndarray,
    validation_refs: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
) -> tuple[np.ndarray, float, dict]:
    """(w_new, b_new, details) for a person's photo embeddings (see the module doc)."""
    from koin_hf.evaluation.embeddings import logits_from_embeddings

    def direction(rows: np.ndarray) -> np.ndarray:
        centred = rows.mean(axis=0) - train_mean
        norm = np.linalg.norm(centred)
        if norm == 0:
            raise KoinError("the photos' embeddings equal the training mean: cannot enroll.")
        return centred / norm

    d = direction(photos)
    if len(photos) > 1:  # leave-one-out: each photo against the prototype of the others
        own = np.array(
            [direction(np.delete(photos, i, axis=0)) @ (photos[i] - train_mean)
             for i in range(len(photos))]
        )  # fmt: skip
    else:
        own = np.array([d @ (photos[0] - train_mean)])
    others = (validation - train_mean) @ d
    logits = logits_from_embeddings(validation, weight, bias).astype(np.float64)
    rows = np.arange(len(validation_refs))
    own_logit = float(logits[rows, validation_refs].mean())
    mask = np.ones_like(logits, bool)
    mask[rows, validation_refs] = False
    other_logit = float(logits[mask].mean())
    gap = float(own.mean() - others.mean())
    if gap <= 0:
        raise KoinError(
            "these photos are no closer to each other than to other people's photos in the "
            "model's embedding space: enrolling them would not recognise the person."
        )
    scale = (own_logit - other_logit) / gap
    beta = own_logit - scale * float(own.mean())
    # Guard the trained people: on their validation photos the new logit must stay below
    # their own class's logit (no photo taken from them), so beta is lowered where needed.
    headroom = logits[rows, validation_refs] - scale * others
    safe_beta = float(headroom.min()) - 1e-3
    guarded = safe_beta < beta
    beta = min(beta, safe_beta)
    w_new = (scale * d).astype(np.float32)
    b_new = float(beta - scale * float(d @ train_mean))
    details = {
        "scale": scale,
        "own_projection_loo": float(own.mean()),
        "others_projection": float(others.mean()),
        "target_own_logit": own_logit,
        "target_other_logit": other_logit,
        "offset_lowered_to_spare_trained_people": bool(guarded),
    }
    return w_new, b_new, details


def enroll(
    model_dir: str | Path,
    name: str,
    images: Sequence[str | Path],
    dataset: str | Path | None = None,
    *,
    batch_size: int = 32,
    device=None,
) -> dict:
    """Add `name` to the model folder's head from a few photos; returns what was recorded."""
    from koin_hf.evaluation.embeddings import (
        Embedder,
        dataset_for,
        embed_configs,
        head_parameters,
        training_config_for,
    )
    from koin_hf.evaluation.open_set_eval import _to_model_index, validation_of
    from koin_hf.evaluation.scoring import normalize_name
    from koin_hf.folder_lock import follow_umask

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise KoinError(f"{model_dir} is not a local model folder: enroll writes into one.")
    name = normalize_name(name)
    if not name:
        raise KoinError("--name must not be empty.")
    paths = _image_paths(images)
    if not paths:
        raise KoinError("enroll needs at least one photo of the person.")
    known = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("id2label", {})
    if name in {normalize_name(label) for label in known.values()}:
        raise KoinError(f"the model already knows {name!r}; unenroll it first to replace it.")
    dataset = dataset_for(model_dir, dataset)
    # The config the model was trained on: for a face model (normal-faces) each photo is cut to
    # its largest face as prepare cut the training crops, and the scale comes from face crops.
    config = training_config_for(model_dir)
    inputs, without_face = _model_inputs(paths, config, dataset)
    embedder = Embedder(model_dir, device=device)
    labels = _labels(embedder.model)
    photos = np.concatenate(
        [
            embedder.embed_images(inputs[i : i + batch_size])
            for i in range(0, len(inputs), batch_size)
        ]
    )
    train = embed_configs(embedder, dataset, [config], splits=["train"], batch_size=batch_size)[
        f"{config}/train"
    ]
    validation = validation_of(model_dir, train)
    if len(validation) == 0:
        raise KoinError(f"no validation photos in {dataset} to set the new row's scale with.")
    weight, bias = head_parameters(embedder.model)
    refs = _to_model_index(validation.class_names, labels)[validation.labels]
    w_new, b_new, details = enrollment_row(
        photos, train.features.mean(axis=0), validation.features, refs, weight, bias
    )
    set_head(
        embedder.model,
        np.vstack([weight, w_new[None, :]]),
        np.append(bias, b_new).astype(np.float32),
        [*labels, name],
    )
    prototypes = Prototypes.load(model_dir)
    if prototypes is not None:  # a calibrated model: the person gets a prototype too
        row = photos.mean(axis=0) - prototypes.mean
        row = row / max(float(np.linalg.norm(row)), 1e-12)
        prototypes.rows = np.vstack([prototypes.rows, row[None, :].astype(np.float32)])
    enrolled = dict(getattr(embedder.model.config, ENROLLED_KEY, None) or {})
    enrolled[name] = {
        "photos": [Path(p).name for p in paths if p not in without_face],
        "photos_without_a_face": [Path(p).name for p in without_face],
        "config_for_scale": config,
        "dataset_for_scale": str(dataset),
        **{k: round(v, 6) for k, v in details.items()},
    }
    setattr(embedder.model.config, ENROLLED_KEY, enrolled)
    with quiet_model_io():
        embedder.model.save_pretrained(model_dir, safe_serialization=True)
    if prototypes is not None:
        prototypes.save(model_dir)
    follow_umask(model_dir)
    return {"name": name, "labels": len(labels) + 1, **enrolled[name]}


def unenroll(model_dir: str | Path, name: str, *, device=None) -> dict:
    """Remove the label `name` (its head row) from the model folder."""
    from koin_hf.evaluation.embeddings import head_parameters
    from koin_hf.evaluation.scoring import ImageScorer, normalize_name
    from koin_hf.folder_lock import follow_umask

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise KoinError(f"{model_dir} is not a local model folder: unenroll writes into one.")
    model = ImageScorer(model_dir, device=device).model
    labels = _labels(model)
    keys = [normalize_name(label) for label in labels]
    if normalize_name(name) not in keys:
        raise KoinError(f"the model has no label {name!r}; its labels: {', '.join(labels)}.")
    if len(labels) <= 2:
        raise KoinError("a classifier needs at least two labels; cannot remove one more.")
    index = keys.index(normalize_name(name))
    weight, bias = head_parameters(model)
    keep = [i for i in range(len(labels)) if i != index]
    set_head(model, weight[keep], bias[keep], [labels[i] for i in keep])
    enrolled = dict(getattr(model.config, ENROLLED_KEY, None) or {})
    was_enrolled = enrolled.pop(labels[index], None) is not None
    setattr(model.config, ENROLLED_KEY, enrolled)
    with quiet_model_io():
        model.save_pretrained(model_dir, safe_serialization=True)
    prototypes = Prototypes.load(model_dir)
    if prototypes is not None and len(prototypes.rows) == len(labels):
        prototypes.rows = prototypes.rows[keep]
        prototypes.save(model_dir)
    follow_umask(model_dir)
    return {"name": labels[index], "was_enrolled": was_enrolled, "labels": len(keep)}
