"""Name -> classifier + image processor: a family name, `<family>-tiny`, a Hub id or a folder.

Everything that differs between families comes from the registry (`koin_hf.models.registry`);
this module only loads, sets the labels and resizes the processor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    BaseImageProcessor,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperImageProcessor,
)

from koin_hf.errors import KoinError
from koin_hf.models import offline
from koin_hf.models.model_folder import check_model_folder
from koin_hf.models.registry import (
    FAMILIES,
    ModelFamily,
    family_for_checkpoint,
    family_of,
    get_family,
    known_families,
)

logger = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ReplacedHeadReport(logging.Filter):
    """Drops transformers' LOAD REPORT when its only rows are the head koin-hf replaces.

    With `ignore_mismatched_sizes`, from_pretrained logs a table flagging the classification
    head as MISMATCH: that head is replaced on purpose (another number of classes). A report
    with any other row (a missing or unexpected key, a mismatch outside the head) is kept.
    """

    def __init__(self, head_modules: tuple[str, ...]) -> None:
        super().__init__()
        self.head_modules = set(head_modules)
        self.dropped = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", record.getMessage())
        if "LOAD REPORT" not in message:
            return True
        rows = [
            [cell.strip() for cell in line.split("|")]
            for line in message.splitlines()
            if line.count("|") >= 2 and not line.lstrip().startswith("Key")
        ]
        if rows and all(
            len(row) > 1 and row[1] == "MISMATCH" and self.head_modules & set(row[0].split("."))
            for row in rows
        ):
            self.dropped = True
            return False
        return True


class _MessageFilter(logging.Filter):
    """Drops the records whose message contains `text`; nothing else."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


# transformers logs "Requested torchvision backend is not available. Falling back to pil
# backend." for every timm-wrapper model (koin-hf's default, Lite0), whose image processor exists
# only as a PIL class: nothing is missing and nothing can be done about it.
_PIL_ONLY_NOTICE = "backend is not available. Falling back to pil backend"


@contextlib.contextmanager
def quiet_model_io():
    """Load or save a model without transformers' sub-second "Loading weights" / "Writing model
    shards" bars and without the PIL-only processor notice; both come back afterwards.

    Used where `koin predict`, `recognize`, `evaluate`, `embed`, `probe`, `calibrate`, `enroll`
    and `demo` load or rewrite a model folder, so their output is their own results.
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    notice_logger = logging.getLogger("transformers.models.auto.image_processing_auto")
    notice_filter = _MessageFilter(_PIL_ONLY_NOTICE)
    hf_logging.disable_progress_bar()
    notice_logger.addFilter(notice_filter)
    try:
        yield
    finally:
        notice_logger.removeFilter(notice_filter)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _replaced_head_report_hidden(family: ModelFamily, hide: bool):
    if not hide:
        yield
        return
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_filter = _ReplacedHeadReport(family.head_modules)
    report_logger.addFilter(report_filter)
    # The same replacement, seen by the config: a checkpoint with another number of labels
    # than the new id2label. num_labels must still be passed (the timm wrapper keeps its 1,000
    # classes without it), so the notice is dropped here rather than avoided.
    config_logger = logging.getLogger("transformers.configuration_utils")
    config_filter = _MessageFilter("which is incompatible to the `id2label` map of length")
    config_logger.addFilter(config_filter)
    try:
        yield
    finally:
        report_logger.removeFilter(report_filter)
        config_logger.removeFilter(config_filter)
    if report_filter.dropped:
        logger.info("replaced the checkpoint's classification head (another number of classes)")


def _label_kwargs(label_names: list[str]) -> dict:
    if len(set(label_names)) != len(label_names):
        raise KoinError("Label names must be unique; got duplicates in the dataset's labels.")
    return {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def _set_timm_image_size(config: PretrainedConfig, image_size: int) -> None:
    pretrained_cfg = dict(getattr(config, "pretrained_cfg", None) or {})
    pretrained_cfg["input_size"] = [3, image_size, image_size]
    config.pretrained_cfg = pretrained_cfg


def _resized_processor(processor: BaseImageProcessor, image_size: int) -> BaseImageProcessor:
    """The same processor producing image_size x image_size inputs."""
    settings = processor.to_dict()
    size = settings.get("size") or {}
    if size.get("shortest_edge"):
        settings["size"] = {"shortest_edge": image_size}
    else:
        settings["size"] = {"height": image_size, "width": image_size}
    if settings.get("crop_size"):
        settings["crop_size"] = {"height": image_size, "width": image_size}
    settings.pop("image_processor_type", None)
    return type(processor).from_dict(settings)


def _timm_processor(config: PretrainedConfig) -> BaseImageProcessor:
    return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg)


def _tiny_model(family: ModelFamily, label_names: list[str], image_size: int | None):
    size = image_size or offline.TINY_IMAGE_SIZE
    config = family.tiny_config(len(label_names), size)
    labels = _label_kwargs(label_names)
    config.id2label, config.label2id = labels["id2label"], labels["label2id"]
    model = family.model_class(config)
    if not family.fixed_image_size:
        offline.init_tiny_weights(model)
    processor = _timm_processor(config) if family.is_timm else family.tiny_processor(size)
    return model, processor


def _resolve(model_name_or_path: str) -> tuple[str, ModelFamily | None]:
    """(checkpoint to load, family if already known from the name)."""
    if model_name_or_path in FAMILIES:
        family = FAMILIES[model_name_or_path]
        return family.default_checkpoint_path(), family
    family = family_for_checkpoint(model_name_or_path)
    if family is not None:
        return family.default_checkpoint_path(), family
    if os.path.isdir(model_name_or_path):
        check_model_folder(model_name_or_path)  # no config.json, truncated or missing weights
        return model_name_or_path, None
    if "/" not in model_name_or_path:
        raise KoinError(
            f"'{model_name_or_path}' is neither a model family, '<family>-tiny', a local folder "
            f"nor a Hub id; known families: {known_families()}."
        )
    return model_name_or_path, None


def _load_failed(checkpoint: str) -> KoinError:
    return KoinError(
        f"Could not load the checkpoint '{checkpoint}' (offline, or no such Hub repo or folder?); "
        f"pass a local checkpoint folder or an offline model such as 'lite0' or 'vit-tiny'."
    )


def load_model_and_processor(
    model_name_or_path: str,
    label_names: list[str],
    *,
    ignore_mismatched_sizes: bool = True,
    seed: int | None = None,
    image_size: int | None = None,
    report_replaced_head: bool = True,
) -> tuple[PreTrainedModel, BaseImageProcessor, ModelFamily]:
    """A classifier for `label_names`, its image processor and its family.

    `model_name_or_path` is a family name (its default checkpoint; `lite0` works offline), a
    `<family>-tiny` random model for offline tests and demos, a Hub id, or a local checkpoint
    folder. The head is re-initialized (seeded by `seed`) when its size differs, if
    `ignore_mismatched_sizes`; `image_size` overrides the processor's input size. With
    `report_replaced_head=False`, transformers' load report is left out when the replaced head
    is all it reports (train.py's quiet default).
    """
    if not label_names:
        raise KoinError("At least one label name is needed to build a classifier.")
    if model_name_or_path.endswith("-tiny"):
        if seed is not None:
            transformers.set_seed(seed)
        family = get_family(model_name_or_path.removesuffix("-tiny"))
        model, processor = _tiny_model(family, list(label_names), image_size)
        return use_family_memory_format(model, family), processor, family

    # Resolve first: building the Lite0 checkpoint on a first run draws random numbers, and the
    # new head must start the same whether the cache was cold or warm.
    checkpoint, family = _resolve(model_name_or_path)
    if seed is not None:
        transformers.set_seed(seed)
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except OSError as error:
        raise _load_failed(checkpoint) from error
    family = family or family_of(config)
    if image_size and family.fixed_image_size:
        native = getattr(getattr(config, "vision_config", config), "image_size", None)
        if native != image_size:
            raise KoinError(
                f"The {family.name} checkpoint '{checkpoint}' runs at {native} px only; "
                f"drop --image_size or set it to {native}."
            )
    try:
        with _replaced_head_report_hidden(family, not report_replaced_head):
            model = family.model_class.from_pretrained(
                checkpoint,
                ignore_mismatched_sizes=ignore_mismatched_sizes,
                **_label_kwargs(label_names),
            )
    except OSError as error:
        raise _load_failed(checkpoint) from error
    except RuntimeError as error:
        if "ignore_mismatched_sizes" not in str(error) and "size mismatch" not in str(error):
            raise
        raise KoinError(
            f"The head of '{checkpoint}' has another number of classes than the "
            f"{len(label_names)} labels; pass --ignore_mismatched_sizes to re-initialize it."
        ) from error
    if family.is_timm:
        # TimmWrapperConfig would otherwise save the checkpoint's old `label_names`.
        model.config.label_names = list(label_names)
        if image_size:
            _set_timm_image_size(model.config, image_size)
        processor = _timm_processor(model.config)
    else:
        try:
            processor = AutoImageProcessor.from_pretrained(checkpoint)
        except OSError as error:
            raise _load_failed(checkpoint) from error
        if image_size:
            processor = _resized_processor(processor, image_size)
    return use_family_memory_format(model, family), processor, family


def save_processor(processor: BaseImageProcessor, folder) -> None:
    """Save the image processor beside a model, where it has a file of its own.

    A timm model's processor lives in its config.json (`pretrained_cfg`), and
    TimmWrapperImageProcessor.save_pretrained only warns that it is disabled.
    """
    if not isinstance(processor, TimmWrapperImageProcessor):
        processor.save_pretrained(folder)


def processor_for_trainer(processor: BaseImageProcessor) -> BaseImageProcessor | None:
    """What Trainer may save in each checkpoint: None for a timm processor (see save_processor)."""
    return None if isinstance(processor, TimmWrapperImageProcessor) else processor


def use_family_memory_format(
    model: PreTrainedModel, family: ModelFamily | None = None
) -> PreTrainedModel:
    """Channels-last weights where the family runs faster so (see ModelFamily.channels_last).

    Inputs need no conversion: a convolution with channels-last weights gives channels-last
    output whatever the input's layout. Saved weights are the same values either way. Without
    `family`, the model's config names it; a model of no known family is left as it is.
    """
    if family is None:
        try:
            family = family_of(model.config)
        except KoinError:
            return model
    if family.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def resolve_checkpoint(model_name_or_path: str) -> str:
    """What `from_pretrained` / `pipeline()` loads for a name: a family's default checkpoint (built
    locally for `lite0`), a checked local folder, or a Hub id."""
    return _resolve(str(model_name_or_path))[0]
