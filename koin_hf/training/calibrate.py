"""`koin calibrate`: a temperature and a rejection threshold, written into the model folder.

1. The validation split (carved from train as the model's run carved it: its run record's seed
   and `train_val_split`) is embedded once (cached) and scored by the model's own head.
2. The temperature T minimises the validation negative log-likelihood; ECE before and after is
   measured on the same split (and reported by `koin evaluate --open_set` on the test sets).
3. T is folded into the head (W/T, b/T): every consumer, plain `pipeline()` included, then
   reports calibrated probabilities, with the same top-1 as before.
4. The threshold is the calibrated top softmax score that at most `target_far` of impostor
   photos exceed. Impostors: each validation photo scored with its own class removed (what the
   model says about a person it does not know, drawn from real photos), plus, optionally,
   photos of known unknowns (`--known_unknowns DATASET`: its `unknown` config; never the people
   you evaluate on).
5. `config.json` gets `koin_open_set` (see `koin_hf.evaluation.open_set.OpenSetSettings`).
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
    )
    from koin_hf.evaluation.open_set import (
        CONFIG_KEY,
        OpenSetSettings,
        fit_temperature,
        held_out_class_scores,
        reliability,
        softmax,
        threshold_at_far,
    )
    from koin_hf.evaluation.open_set_eval import _to_model_index, validation_of
    from koin_hf.folder_lock import follow_umask

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise KoinError(f"{model_dir} is not a local model folder: calibrate writes into one.")
    if not 0 < target_far < 1:
        raise KoinError(f"--target_far must be between 0 and 1, got {target_far}")
    dataset = dataset_for(model_dir, dataset)
    embedder = Embedder(model_dir, device=device)
    previous = OpenSetSettings.from_config(embedder.model.config)
    weight, bias = head_parameters(embedder.model)
    train = embed_configs(
        embedder, dataset, ["normal"], splits=["train"], batch_size=batch_size,
        num_workers=num_workers,
    )["normal/train"]  # fmt: skip
    validation = validation_of(model_dir, train)
    logits = logits_from_embeddings(validation.features, weight, bias)
    refs = _to_model_index(validation.class_names, embedder.labels)[validation.labels]
    temperature = fit_temperature(logits, refs)
    correct = logits.argmax(axis=1) == refs
    ece_before = reliability(softmax(logits).max(axis=1), correct)["ece"]
    ece_after = reliability(softmax(logits, temperature).max(axis=1), correct)["ece"]

    impostors = [held_out_class_scores(logits, refs, temperature)]
    sources = {"validation, own class removed": len(validation)}
    if known_unknowns:
        extra = embed_configs(
            embedder, known_unknowns, [OPEN_SET_CONFIG], splits=["test"], batch_size=batch_size,
            num_workers=num_workers,
        )[f"{OPEN_SET_CONFIG}/test"]  # fmt: skip
        extra_logits = logits_from_embeddings(extra.features, weight, bias)
        impostors.append(softmax(extra_logits, temperature).max(axis=1))
        sources[f"known unknowns ({known_unknowns})"] = len(extra)
    impostor_scores = np.concatenate(impostors)
    threshold = threshold_at_far(impostor_scores, target_far)

    # A model calibrated before: its head already holds the old temperature; compose them.
    total_temperature = temperature * (previous.temperature if previous else 1.0)
    head = head_linear(embedder.model)
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    settings = OpenSetSettings(
        threshold=threshold,
        score="msp",
        temperature=round(total_temperature, 6),
        temperature_folded=True,
        target_far=target_far,
        fitted_on={
            "dataset": str(dataset),
            "validation_images": len(validation),
            "impostors": sources,
            "validation_ece_before": ece_before,
            "validation_ece_after": ece_after,
            "validation_top1_accuracy": float(correct.mean()),
        },
    )
    setattr(embedder.model.config, CONFIG_KEY, settings.to_dict())
    embedder.model.save_pretrained(model_dir, safe_serialization=True)
    follow_umask(model_dir)
    return settings.to_dict()
