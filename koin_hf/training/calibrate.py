"""`koin calibrate`: a temperature and a rejection threshold, written into the model folder.

1. The validation split (carved from train as the model's run carved it: its run record's seed
   and `train_val_split`) is embedded once (cached) and scored by the model's own head.
2. The temperature T minimises the validation negative log-likelihood; ECE before and after is
   measured on the same split (and reported by `koin evaluate --open_set` on the test sets).
3. T is folded into the head (W/T, b/T): every consumer, plain `pipeline()` included, then
   reports calibrated probabilities, with the same top-1 as before.
4. The class prototypes (mean embedding of each class over the training part, centred on the
   training mean) are written to `open_set.safetensors`; the rejection score is an image's
   largest cosine with them (`--score prototype_cosine`, the default: it separated unknown
   people best, see docs/OPEN_SET.md) or the calibrated top softmax score (`--score msp`).
5. The threshold is the score that at most `target_far` of impostor photos exceed.
   Impostors: each validation photo scored with its own class taken out (what the model says
   about a person it does not know, drawn from real photos), plus, optionally, photos of known
   unknowns (`--known_unknowns DATASET`: its `unknown` config; never the people you evaluate
   on). The same FAR is also fitted on the calibrated top softmax score (`msp_threshold`), for
   `pipeline()` users without koin-hf.
6. `config.json` gets `koin_open_set` (see `koin_hf.evaluation.open_set.OpenSetSettings`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from koin_hf.errors import KoinError


def calibrate_model(
    model_dir: str | Path,
    dataset: str | Path | None = None,
    *,
    target_far: float = 0.01,
    score: str = "prototype_cosine",
    known_unknowns: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device=None,
) -> dict:
    """Fit temperature and threshold on validation; rewrite the folder's head and config.json."""
    from koin_hf.dataset_script.koin import OPEN_SET_CONFIG
    from koin_hf.evaluation.embeddings import (
        Embedder,
        dataset_for,
        embed_configs,
        head_linear,
        head_parameters,
        logits_from_embeddings,
        training_config_for,
    )
    from koin_hf.evaluation.open_set import (
        CONFIG_KEY,
        NO_MISTAKES_NOTE,
        OpenSetSettings,
        Prototypes,
        fit_temperature,
        held_out_class_scores,
        held_out_prototype_scores,
        reliability,
        softmax,
        threshold_at_far,
    )
    from koin_hf.evaluation.open_set_eval import _to_model_index, split_like_training
    from koin_hf.faces.configs import like
    from koin_hf.folder_lock import follow_umask
    from koin_hf.models.loading import quiet_model_io

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise KoinError(f"{model_dir} is not a local model folder: calibrate writes into one.")
    if score not in ("prototype_cosine", "msp"):
        raise KoinError(f"--score must be prototype_cosine or msp, not {score!r}")
    if not 0 < target_far < 1:
        raise KoinError(f"--target_far must be between 0 and 1, got {target_far}")
    dataset = dataset_for(model_dir, dataset)
    embedder = Embedder(model_dir, device=device)
    previous = OpenSetSettings.from_config(embedder.model.config)
    weight, bias = head_parameters(embedder.model)
    # The config the model was trained on: a face model is calibrated on face crops, with the
    # validation rows its own run held out.
    config = training_config_for(model_dir)
    train = embed_configs(
        embedder, dataset, [config], splits=["train"], batch_size=batch_size,
        num_workers=num_workers,
    )[f"{config}/train"]  # fmt: skip
    part, validation = split_like_training(model_dir, train)
    to_model = _to_model_index(validation.class_names, embedder.labels)
    prototypes = Prototypes.from_embeddings(
        part.features, to_model[part.labels], len(embedder.labels)
    )
    logits = logits_from_embeddings(validation.features, weight, bias)
    refs = to_model[validation.labels]
    temperature = fit_temperature(logits, refs)
    correct = logits.argmax(axis=1) == refs
    temperature_note = NO_MISTAKES_NOTE if correct.all() else None
    ece_before = reliability(softmax(logits).max(axis=1), correct)["ece"]
    ece_after = reliability(softmax(logits, temperature).max(axis=1), correct)["ece"]

    impostors = [held_out_class_scores(logits, refs, temperature)]
    proto_impostors = [
        held_out_prototype_scores(prototypes.similarities(validation.features), refs)
    ]
    sources = {"validation, own class removed": len(validation)}
    if known_unknowns:
        unknown_config = like(config, OPEN_SET_CONFIG)
        extra = embed_configs(
            embedder, known_unknowns, [unknown_config], splits=["test"], batch_size=batch_size,
            num_workers=num_workers,
        )[f"{unknown_config}/test"]  # fmt: skip
        extra_logits = logits_from_embeddings(extra.features, weight, bias)
        impostors.append(softmax(extra_logits, temperature).max(axis=1))
        proto_impostors.append(prototypes.scores(extra.features))
        sources[f"known unknowns ({known_unknowns})"] = len(extra)
    msp_threshold = threshold_at_far(np.concatenate(impostors), target_far)
    proto_threshold = threshold_at_far(np.concatenate(proto_impostors), target_far)

    # A model calibrated before: its head already holds the old temperature; compose them.
    total_temperature = temperature * (previous.temperature if previous else 1.0)
    head = head_linear(embedder.model)
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    settings = OpenSetSettings(
        threshold=proto_threshold if score == "prototype_cosine" else msp_threshold,
        score=score,
        msp_threshold=msp_threshold,
        temperature=round(total_temperature, 6),
        temperature_folded=True,
        target_far=target_far,
        fitted_on={
            "dataset": str(dataset),
            "config": config,
            "validation_images": len(validation),
            "temperature_note": temperature_note,
            "impostors": sources,
            "validation_ece_before": ece_before,
            "validation_ece_after": ece_after,
            "validation_top1_accuracy": float(correct.mean()),
        },
    )
    setattr(embedder.model.config, CONFIG_KEY, settings.to_dict())
    with quiet_model_io():
        embedder.model.save_pretrained(model_dir, safe_serialization=True)
    prototypes.save(model_dir)
    follow_umask(model_dir)
    return settings.to_dict()
