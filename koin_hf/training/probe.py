"""`koin probe`: the KoIn paper's linear probe, on cached embeddings.

The paper's "CLIP" numbers are a logistic regression on frozen image features with C = 0.316
(the protocol of the CLIP paper: scikit-learn's multinomial L-BFGS, C swept on validation).
`train.py --freeze_backbone` approximates that with a Trainer run that pushes every image
through the backbone every epoch; here the backbone runs once per image (`koin embed`'s cache)
and the head is fitted in seconds.

The solver is torch's L-BFGS (strong Wolfe line search, full batch, float64) minimising
scikit-learn's objective for `LogisticRegression(C=C)`, multinomial, L2, bias unpenalised:

    C * sum_i cross_entropy_i + ||W||^2 / 2

so a C means what it means in the paper and in scikit-learn, with no new dependency, on the
GPU when there is one. C is swept on the validation split carved from train exactly as train.py
carves it (never a test set); 0.316 is in the default sweep. The chosen head is written into
the backbone's own classifier, so the folder is an ordinary pipeline-ready model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from koin_hf.errors import KoinError

# 10^(k/2), k = -6..4: 0.001 ... 100, with the paper's 0.316 (= 10^-0.5) among them.
DEFAULT_C_SWEEP: tuple[float, ...] = tuple(round(10 ** (k / 2), 6) for k in range(-6, 5))
# scikit-learn's LogisticRegression defaults (the CLIP paper's probe used them with
# max_iter=1000): stop when the largest gradient entry of the per-image objective is below 1e-4.
DEFAULT_TOL = 1e-4
DEFAULT_MAX_ITER = 1000
PROBE_FILE = "probe.json"


@dataclass
class ProbeFit:
    C: float
    weight: np.ndarray  # (n_classes, dim)
    bias: np.ndarray  # (n_classes,)
    iterations: int
    validation_top1: float | None = None
    validation_top3: float | None = None
    validation_nll: float | None = None


def fit_logistic_regression(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    C: float,
    *,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    device: str | torch.device | None = None,
) -> ProbeFit:
    """Multinomial logistic regression, L2 penalty 1/(2C) on W (not b), fitted by L-BFGS.

    Stops when the largest gradient entry of the per-image objective is below `tol`
    (scikit-learn's `tol` for lbfgs) or after `max_iter` iterations.
    """
    problem = _Problem(features, labels, num_classes, device)
    start = None if init is None else problem.to_basis(*init)
    weight, bias, iterations = problem.fit(C, max_iter=max_iter, tol=tol, init=start)
    return problem.result(C, weight, bias, iterations)


class _Problem:
    """Features and labels as float64 tensors, in the basis the solver works in.

    The loss sees W only through X W^T and the penalty ||W||^2 is rotation-invariant, so the
    optimum lies in X's row space: fitting in an orthonormal basis of it is the same problem,
    exactly, with fewer unknowns (n x classes instead of dim x classes). That pays when there
    are fewer images than feature dimensions (few-shot; 510 x 1280 for the default model) and is
    skipped otherwise. The basis is computed once per sweep, not once per C.
    """

    def __init__(self, features, labels, num_classes: int, device=None) -> None:
        self.device = torch.device(device or "cpu")
        x = torch.as_tensor(features, dtype=torch.float64, device=self.device)
        self.y = torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        self.num_classes = num_classes
        self.basis = None
        n, dim = x.shape
        if n < dim:
            # X^T = Q R: Q's n orthonormal columns span (at least) the row space, and X Q = R^T.
            q, r = torch.linalg.qr(x.T)
            self.basis, x = q.T.contiguous(), r.T.contiguous()
        self.x = x
        self.one_hot = torch.nn.functional.one_hot(self.y, num_classes).to(torch.float64)

    def to_basis(self, weight, bias) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.as_tensor(weight, dtype=torch.float64, device=self.device)
        bias = torch.as_tensor(bias, dtype=torch.float64, device=self.device)
        return (weight @ self.basis.T if self.basis is not None else weight), bias

    def result(self, C: float, weight, bias, iterations: int) -> ProbeFit:
        if self.basis is not None:
            weight = weight @ self.basis
        return ProbeFit(
            C,
            weight.cpu().numpy().astype(np.float32),
            bias.cpu().numpy().astype(np.float32),
            iterations,
        )

    def fit(self, C: float, *, max_iter: int, tol: float, init=None):
        """(weight, bias, iterations) in the working basis, float64."""
        if C <= 0 or not math.isfinite(C):
            raise KoinError(f"C must be a positive number, got {C}.")
        x, y, one_hot = self.x, self.y, self.one_hot
        n, dim = x.shape
        weight = torch.zeros(self.num_classes, dim, dtype=torch.float64, device=self.device)
        bias = torch.zeros(self.num_classes, dtype=torch.float64, device=self.device)
        if init is not None:
            weight.copy_(init[0])
            bias.copy_(init[1])
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1,
            max_iter=max_iter,
            tolerance_grad=tol,
            tolerance_change=1e-12,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        @torch.no_grad()
        def closure():
            # scikit-learn's objective divided by n*C (the same minimum, better-scaled
            # gradients), its gradient written out: no autograd graph per line-search step.
            logits = torch.addmm(bias, x, weight.T)
            log_norm = torch.logsumexp(logits, dim=1)
            loss = (log_norm - logits.gather(1, y[:, None]).squeeze(1)).mean()
            loss = loss + (weight * weight).sum() / (2 * C * n)
            residual = (torch.exp(logits - log_norm[:, None]) - one_hot) / n
            weight.grad = residual.T @ x + weight / (C * n)
            bias.grad = residual.sum(dim=0)
            return loss

        optimizer.step(closure)
        iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
        return weight, bias, iterations


def _evaluate_fit(fit: ProbeFit, features: np.ndarray, labels: np.ndarray) -> None:
    from koin_hf.evaluation.embeddings import logits_from_embeddings
    from koin_hf.evaluation.metrics import top_k_credit

    logits = logits_from_embeddings(features, fit.weight, fit.bias).astype(np.float64)
    fit.validation_top1 = float(top_k_credit(logits, labels, 1).mean())
    fit.validation_top3 = float(top_k_credit(logits, labels, min(3, logits.shape[1])).mean())
    z = logits - logits.max(axis=1, keepdims=True)
    log_prob = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    fit.validation_nll = float(-log_prob[np.arange(len(labels)), labels].mean())


def sweep_c(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    c_values: Sequence[float] = DEFAULT_C_SWEEP,
    *,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    device: str | torch.device | None = None,
) -> tuple[ProbeFit, list[ProbeFit]]:
    """Fit every C (ascending, each warm-started from the previous), pick the best validation
    top-1, ties broken by the lower validation log-loss."""
    if len(val_labels) == 0:
        raise KoinError("the validation split is empty: C cannot be chosen without it.")
    problem = _Problem(train_features, train_labels, num_classes, device)
    fits: list[ProbeFit] = []
    previous = None
    for C in sorted(set(float(c) for c in c_values)):
        weight, bias, iterations = problem.fit(C, max_iter=max_iter, tol=tol, init=previous)
        fit = problem.result(C, weight, bias, iterations)
        _evaluate_fit(fit, val_features, val_labels)
        fits.append(fit)
        previous = (weight.clone(), bias.clone())
    best = max(fits, key=lambda f: (f.validation_top1, -f.validation_nll))
    return best, fits


def check_probe_settings(
    c_values: Sequence[float],
    shots_per_class: int | None,
    train_val_split: float,
    batch_size: int,
    num_workers: int,
    max_iter: int,
    tol: float,
) -> None:
    """Every setting of `koin probe` checked before a model loads: one KoinError naming the flag."""
    if not c_values or not all(math.isfinite(c) and c > 0 for c in c_values):
        bad = next((c for c in c_values if not (math.isfinite(c) and c > 0)), None)
        raise KoinError(f"--C values must be finite positive numbers, got {bad}.")
    if shots_per_class is not None and shots_per_class < 1:
        raise KoinError(f"--shots_per_class must be at least 1, got {shots_per_class}.")
    if not 0 < train_val_split < 1:
        raise KoinError(f"--train_val_split must be between 0 and 1, got {train_val_split}.")
    if batch_size < 1:
        raise KoinError(f"--batch_size must be at least 1, got {batch_size}.")
    if num_workers < 0:
        raise KoinError(f"--num_workers must be 0 or more, got {num_workers}.")
    if max_iter < 1:
        raise KoinError(f"--max_iter must be at least 1, got {max_iter}.")
    if not (math.isfinite(tol) and tol > 0):
        raise KoinError(f"--tol must be a finite positive number, got {tol}.")


def run_probe(
    model: str,
    dataset: str | None,
    output_dir: str | Path,
    *,
    c_values: Sequence[float] = DEFAULT_C_SWEEP,
    shots_per_class: int | None = None,
    train_val_split: float = 0.15,
    seed: int = 42,
    config: str = "normal",
    batch_size: int = 32,
    num_workers: int = 0,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    test_sets: bool = True,
    overwrite_output_dir: bool = False,
    device: str | None = None,
) -> dict:
    """Embed (or reuse the cache), sweep C, save backbone + fitted head as a model folder."""
    import transformers

    from koin_hf.data.default_dataset import ensure_default_dataset
    from koin_hf.dataset_script.koin import CONFIG_NAMES
    from koin_hf.evaluation.embeddings import (
        Embedder,
        carve_validation,
        embed_configs,
        head_linear,
        logits_from_embeddings,
    )
    from koin_hf.evaluation.metrics import top_k_credit
    from koin_hf.folder_lock import follow_umask
    from koin_hf.hub.model_card import write_model_card
    from koin_hf.models.loading import load_model_and_processor, quiet_model_io
    from koin_hf.run_record import SYNTHETIC_DATASET, RunRecord
    from koin_hf.version import __version__

    started = time.time()
    check_probe_settings(
        c_values, shots_per_class, train_val_split, batch_size, num_workers, max_iter, tol
    )
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise KoinError(f"--output_dir {output_dir} is a file, not a folder.")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite_output_dir:
        raise KoinError(
            f"output folder {output_dir} is not empty; pick another or pass --overwrite_output_dir"
        )
    dataset_name = dataset or str(ensure_default_dataset())
    from koin_hf.data.loading import config_names

    # The dataset is checked before the model loads: a typo costs nothing.
    present = set(config_names(dataset_name))
    if config not in present:
        raise KoinError(
            f"dataset {dataset_name} has no config {config!r} (it has: {', '.join(sorted(present))})"
        )
    import datasets

    if "train" not in datasets.get_dataset_split_names(dataset_name, config):
        raise KoinError(f"config {config!r} of {dataset_name} has no train split")
    embedder = Embedder(model, device=device)
    wanted = [config] + ([c for c in CONFIG_NAMES if c != config] if test_sets else [])
    embedded = embed_configs(
        embedder,
        dataset_name,
        [c for c in wanted if c in present],
        splits=None,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    if f"{config}/train" not in embedded:
        raise KoinError(f"config {config!r} of {dataset_name} has no train split")
    everything = embedded[f"{config}/train"]
    train, validation = carve_validation(everything, train_val_split, seed, shots_per_class)
    names = everything.class_names
    embed_seconds = time.time() - started

    fit_started = time.time()
    best, fits = sweep_c(
        train.features, train.labels, validation.features, validation.labels, len(names),
        c_values, max_iter=max_iter, tol=tol, device=device,
    )  # fmt: skip
    fit_seconds = time.time() - fit_started

    metrics: dict[str, float] = {
        "eval_validation_top1_accuracy": best.validation_top1,
        "eval_validation_top3_accuracy": best.validation_top3,
        "eval_validation_num_images": len(validation),
        "train_num_images": len(train),
    }
    eval_sets = ["validation"]
    for name, emb in embedded.items():
        test_config, split = name.split("/")
        if split != "test" or test_config not in CONFIG_NAMES:
            continue
        logits = logits_from_embeddings(emb.features, best.weight, best.bias)
        for k in (1, 3):
            credit = top_k_credit(logits, emb.labels, min(k, len(names)))
            metrics[f"eval_{test_config}_top{k}_accuracy"] = float(credit.mean())
        metrics[f"eval_{test_config}_num_images"] = len(emb)
        eval_sets.append(test_config)

    # The backbone with a head of the right size, then the fitted head written into it.
    # The head is replaced on purpose: no load report about it, no sub-second bars.
    with quiet_model_io():
        base, processor, family = load_model_and_processor(
            embedder.scorer.source, names, ignore_mismatched_sizes=True, seed=seed,
            report_replaced_head=False,
        )  # fmt: skip
    head = head_linear(base)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(best.weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(best.bias, dtype=head.bias.dtype))
    output_dir.mkdir(parents=True, exist_ok=True)
    with quiet_model_io():
        base.save_pretrained(output_dir, safe_serialization=True)
        processor.save_pretrained(output_dir)
    wall = time.time() - started
    metrics["probe_embed_seconds"] = round(embed_seconds, 2)
    metrics["probe_fit_seconds"] = round(fit_seconds, 2)
    metrics["probe_seconds"] = round(wall, 2)
    (output_dir / "all_results.json").write_text(json.dumps(metrics, indent=2) + "\n")
    probe = {
        "solver": "torch.optim.LBFGS (strong Wolfe), multinomial, L2 on W; scikit-learn's C",
        "chosen_C": best.C,
        "selected_on": f"validation ({train_val_split:g} of {config}/train, seed {seed})",
        "sweep": [
            {
                "C": f.C,
                "iterations": f.iterations,
                "validation_top1_accuracy": f.validation_top1,
                "validation_top3_accuracy": f.validation_top3,
                "validation_nll": f.validation_nll,
            }
            for f in fits
        ],  # fmt: skip
        "backbone_fingerprint": embedder.fingerprint,
        "embeddings": {n: str(e.path) for n, e in embedded.items()},
    }
    (output_dir / PROBE_FILE).write_text(json.dumps(probe, indent=2) + "\n")
    if shots_per_class:
        (output_dir / "fewshot_ids.json").write_text(
            json.dumps(
                {"shots_per_class": shots_per_class, "seed": seed,
                 "image_ids": sorted(train.image_ids)}, indent=2,
            ) + "\n"
        )  # fmt: skip
    total = sum(p.numel() for p in base.parameters())
    record = RunRecord(
        family=family.name,
        base_model=family.default_checkpoint if model == family.name else model,
        method="linear_probe",
        shots_per_class=shots_per_class,
        seed=seed,
        global_steps=best.iterations,
        precision="fp32",
        world_size=1,
        dataset=dataset if dataset else SYNTHETIC_DATASET,
        dataset_config=config,
        eval_sets=eval_sets,
        train_images=len(train),
        trainable_parameters=head.weight.numel() + head.bias.numel(),
        total_parameters=total,
        best_checkpoint_metric="validation_top1_accuracy",
        train_seconds=round(wall, 1),
        data_args={
            "dataset_name": dataset,
            "dataset_config_name": config,
            "train_val_split": train_val_split,
            "shots_per_class": shots_per_class,
            "probe_C": best.C,
            "probe_C_sweep": sorted(set(float(c) for c in c_values)),
        },
        koin_hf_version=__version__,
        transformers_version=transformers.__version__,
    )
    record.save(output_dir)
    write_model_card(output_dir)
    follow_umask(output_dir)
    return {"metrics": metrics, "probe": probe, "output_dir": str(output_dir)}
