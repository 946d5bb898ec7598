"""What a training run prints: one line per stage, one progress bar, the results table.

The default run is quiet. koin-hf's own loggers show warnings plus the stage lines (records
logged with `extra=STAGE`: synthesise, prepare, data, model, train, score); Trainer's bars and
its metric dicts give way to one training bar (`QuietProgressCallback`); the progress bars of
datasets and transformers (loading weights, writing shards, generating splits) are off. The
library warnings koin-hf itself caused are fixed where they arose (the processor save, the
replaced head's load report: see koin_hf.models.loading); the others still show. `--verbose`
restores everything: INFO logs with timestamps, every bar, transformers' own progress callback.
"""

from __future__ import annotations

import logging
import os
import sys

import datasets
import transformers
from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_utils import has_length

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StageOrWarning(logging.Filter):
    """Warnings from every process; stage lines from the main one only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return getattr(record, "koin_stage", False) and os.environ.get("RANK", "0") == "0"


class _QuietFormatter(logging.Formatter):
    """Stage lines as they are; warnings and errors with their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "koin_stage", False) and record.levelno < logging.WARNING:
            return record.getMessage()
        return f"{record.levelname.lower()}: {record.name}: {record.getMessage()}"


def configure_logging(verbose: bool) -> None:
    """Set up what `train.py` shows (see the module docstring); callable again to switch."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "koin_handler", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)  # beside the bars; the table goes to stdout
    handler.koin_handler = True  # type: ignore[attr-defined]
    if verbose:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.setLevel(logging.INFO)
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()
    else:
        handler.setFormatter(_QuietFormatter())
        handler.addFilter(_StageOrWarning())
        root.setLevel(logging.INFO)
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    root.addHandler(handler)
    # transformers and datasets log through their own handlers: warnings, not INFO chatter.
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()


class QuietProgressCallback(TrainerCallback):
    """One training bar whose postfix shows the last validation top-1; no metric dicts.

    Replaces transformers' ProgressCallback in the quiet default run. Evaluations during
    training draw no bar of their own (they are short, and a nested bar breaks the log);
    the final scoring shows one bar per set, removed when done.
    """

    def __init__(self) -> None:
        self.training_bar = None
        self.prediction_bar = None
        self.current_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=state.max_steps, desc="train", unit="step", dynamic_ncols=True
            )
            self.training_bar.update(state.global_step)  # resumed runs start where they were
        self.current_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.update(state.global_step - self.current_step)
        self.current_step = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.prediction_bar is not None:
            self.prediction_bar.close()
            self.prediction_bar = None
        if self.training_bar is not None and metrics:
            top1 = metrics.get("eval_validation_top1_accuracy")
            if top1 is not None:
                self.training_bar.set_postfix_str(f"validation top-1 {100 * top1:.1f}%")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if (
            not state.is_world_process_zero
            or self.training_bar is not None
            or not has_length(eval_dataloader)
        ):
            return
        if self.prediction_bar is None:
            self.prediction_bar = tqdm(
                total=len(eval_dataloader), desc="score", leave=False, dynamic_ncols=True
            )
        self.prediction_bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None
