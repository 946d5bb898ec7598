"""koin-hf's Trainer: the transformers Trainer plus the fixes and hooks KoIn training needs.

- checkpoints go to OUTPUT_DIR/checkpoints/, leaving the top of the folder to the final model;
- checkpoints are loaded through `from_pretrained` (strict), not Trainer's raw
  `load_state_dict(strict=False)`, which drops renamed layers under transformers 5;
- the training transform learns the epoch (for reproducible augmentation);
- `compute_metrics` counts the predictions it saw, so a distributed evaluation is checkable.
"""

from __future__ import annotations

import logging
from typing import Any

from peft import PeftModel
from transformers import PreTrainedModel, Trainer, TrainerCallback

from koin_hf.data import transforms
from koin_hf.evaluation.metrics import DEFAULT_KS, make_compute_metrics
from koin_hf.folder_lock import follow_umask
from koin_hf.runtime import release_free_memory
from koin_hf.training.checkpoints import checkpoints_dir

logger = logging.getLogger(__name__)


def load_checkpoint_weights(model: PreTrainedModel, checkpoint: str) -> None:
    """Load a checkpoint's weights into `model` through from_pretrained, strictly.

    transformers 5 writes checkpoints under legacy parameter names (ViT's
    `encoder.layer.N.attention.attention.query`, ...) and renames them inside from_pretrained,
    but Trainer's resume and load-best-model paths call `load_state_dict(strict=False)` on the raw
    file: every renamed layer silently keeps its current weights. Measured here: a resumed ViT
    run diverged from an uninterrupted one, and the "best" model was a hybrid.
    """
    restored = type(model).from_pretrained(checkpoint, dtype=next(model.parameters()).dtype)
    model.load_state_dict(restored.state_dict(), strict=True)


class KoinTrainer(Trainer):
    """Trainer with checkpoints under checkpoints/, loaded with renamed keys (load_checkpoint_weights)."""

    def _get_output_dir(self, trial: Any) -> str:
        # Trainer saves, rotates and finds the best checkpoint-N under this folder.
        return str(checkpoints_dir(super()._get_output_dir(trial)))

    def _loads_plain_weights(self, model: Any) -> bool:
        return (
            isinstance(model, PreTrainedModel)
            and not isinstance(model, PeftModel)
            and not self.is_fsdp_enabled
            and not self.is_deepspeed_enabled
        )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = model if model is not None else self.model
        if not self._loads_plain_weights(target):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info("loading model weights from %s", resume_from_checkpoint)
        load_checkpoint_weights(target, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if not self._loads_plain_weights(model) or self.state.best_model_checkpoint is None:
            return super()._load_best_model()
        logger.info("loading the best checkpoint %s", self.state.best_model_checkpoint)
        load_checkpoint_weights(model, self.state.best_model_checkpoint)


class AugmentationClockCallback(TrainerCallback):
    """Tells the training transform which epoch it is augmenting (see AugmentationClock)."""

    def __init__(self, clock: transforms.AugmentationClock) -> None:
        self.clock = clock

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is fractional when resuming mid-epoch; the epsilon guards 0.9999999.
        self.clock.epoch = int((state.epoch or 0) + 1e-6)


def compute_metrics_counting_samples(num_labels: int | None = None):
    """Top-1/top-3 plus how many predictions reached the metric.

    Under several processes the distributed sampler pads the last batch with duplicates and
    `gather_for_metrics` must drop them; `eval_<set>_num_samples` lets anyone check it did.
    With fewer classes than a k (two identities), that top-k is left out: it is undefined.
    """
    ks = [k for k in DEFAULT_KS if num_labels is None or k <= num_labels] or [1]
    top_k = make_compute_metrics(ks)

    def compute(prediction) -> dict[str, float]:
        return {**top_k(prediction), "num_samples": int(len(prediction.label_ids))}

    return compute


class UmaskCallback(TrainerCallback):
    """Checkpoints readable as the umask allows (safetensors writes weights 0600)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            follow_umask(checkpoints_dir(args.output_dir))


class ReleaseMemoryCallback(TrainerCallback):
    """Hands freed heap pages back before and after each evaluation (see koin_hf.runtime).

    With large blocks kept in the heap, evaluation's batch sizes would otherwise stack on top of
    the holes training left (measured on Lite0: peak 5.0 GB instead of 4.2 GB).
    """

    def on_epoch_end(self, args, state, control, **kwargs):
        release_free_memory()  # Trainer evaluates right after this

    def on_evaluate(self, args, state, control, **kwargs):
        release_free_memory()
