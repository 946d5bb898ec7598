"""`koin export MODEL --format onnx`: a model folder as a self-describing ONNX folder, checked.

The model is loaded the way `koin evaluate` loads it (`koin_hf.evaluation.scoring.ImageScorer`,
i.e. through `pipeline()`), wrapped so its one input is `pixel_values` and its one output
`logits`, and exported by torch's own exporter (`torch.onnx.export(dynamo=True)`, which needs
`onnxscript`) with a dynamic batch axis. Measured on the tiny model of every registry family,
this exporter matches PyTorch to about 1e-6; the older TorchScript exporter (`dynamo=False`)
gave wrong logits for every family with BatchNorm (resnet, efficientnet, densenet, lite0).

Before the folder is put in place, onnxruntime runs the exported file on real photos decoded
and pre-processed exactly as `koin evaluate` does (by default a few photos of the embedded
synthetic KoIn, normal and hard; `check_images` takes your own), in one batch and one by one,
and its logits are compared with PyTorch's. Above the tolerance (1e-4 by default) nothing is
written and the export fails. The folder holds `model.onnx`, a copy of `config.json` (the real
`id2label`) and `preprocessor_config.json`, and `onnx_check.json` (what was compared, the
largest difference, the versions), so the ONNX file travels with everything needed to use it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from koin_hf.errors import KoinError
from koin_hf.folder_lock import staging_folder_beside

FORMATS = ("onnx",)
DEFAULT_TOLERANCE = 1e-4
ONNX_FILE = "model.onnx"
CHECK_FILE = "onnx_check.json"
# The files an export writes: an output folder holding only these is replaced.
EXPORT_FILES = (ONNX_FILE, "config.json", "preprocessor_config.json", CHECK_FILE)
# Above this many bytes of weights, ONNX's 2 GB protobuf limit needs an external data file.
EXTERNAL_DATA_BYTES = 1_500_000_000
EXTRA_HINT = "pip install 'koin-hf[onnx]'"


@dataclass(frozen=True)
class ExportResult:
    """What `export_onnx` wrote and measured."""

    output_dir: str
    onnx_file: str
    num_check_images: int
    max_abs_diff: float  # the largest |onnxruntime - PyTorch| logit over every check
    tolerance: float
    opset: int
    same_top1: bool  # onnxruntime's best label equals PyTorch's on every check image
    files: tuple[str, ...] = ()  # every file written, model.onnx first


def _onnx_modules():
    """(onnxruntime, onnxscript) or a one-line error naming the extra."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx.export(dynamo=True) needs it)
    except ImportError as err:
        raise KoinError(
            f"ONNX export needs onnx, onnxscript and onnxruntime: {EXTRA_HINT} ({err.name} is missing)"
        ) from None
    return onnxruntime


def default_output_dir(model: str | Path) -> Path:
    """`<MODEL>-onnx` beside a local folder; `./<name>-onnx` for a Hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve().with_name(path.resolve().name + "-onnx")
    return Path(str(model).rstrip("/").split("/")[-1] + "-onnx")


def synthetic_check_photos(count: int = 8) -> list[bytes]:
    """`count` JPEG photos of the embedded synthetic KoIn (normal and hard), rendered in memory."""
    from koin_hf.synthetic.scene import PhotoJob, render_photo

    photos = []
    for index in range(count):
        subset = "test" if index % 2 == 0 else "hard"
        job = PhotoJob(seed=0, subset=subset, label=index // 2, index=0)
        buffer = io.BytesIO()
        render_photo(job).image.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


class _LogitsOnly(torch.nn.Module):
    """pixel_values -> logits, so the ONNX graph has one named input and one named output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def _check_output_dir(output_dir: Path, model: str | Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise KoinError(f"--output_dir {output_dir} is a file, not a folder.")
    if output_dir.is_dir():
        if Path(model).expanduser().is_dir() and output_dir.resolve() == Path(model).resolve():
            raise KoinError("--output_dir must not be the model folder itself.")
        others = sorted(p.name for p in output_dir.iterdir() if p.name not in EXPORT_FILES)
        if others:
            shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            raise KoinError(
                f"--output_dir {output_dir} holds files an export does not write ({shown}); "
                "pick an empty or new folder."
            )


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path) -> int:
    """Write `path` with a dynamic batch axis; return the opset used."""
    wrapped = _LogitsOnly(model).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    batch = torch.export.Dim("batch", min=1, max=65536)
    # The exporter prints its progress and warns about internals the user cannot act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapped,
            (example,),
            str(path),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_shapes={"pixel_values": {0: batch}},
            dynamo=True,
            external_data=weight_bytes > EXTERNAL_DATA_BYTES,
            verbose=False,
        )
    opset = getattr(program.model, "opset_imports", {}).get("", 0) if program else 0
    return int(opset)


def _save_description(scorer, folder: Path) -> None:
    """config.json (id2label) and preprocessor_config.json beside the ONNX file.

    timm-wrapper models keep their pre-processing in config.json (`pretrained_cfg`), which is
    where transformers reads it from, so they get no preprocessor_config.json.
    """
    from transformers import TimmWrapperImageProcessor

    scorer.model.config.save_pretrained(folder)
    if not isinstance(scorer.image_processor, TimmWrapperImageProcessor):
        scorer.image_processor.save_pretrained(folder)


def export_onnx(
    model: str | Path,
    output_dir: str | Path | None = None,
    *,
    check_images: Sequence[str | Path] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_megapixels: float | None = None,
) -> ExportResult:
    """Export `model` (a koin-hf output folder, any pipeline-loadable classifier) to ONNX.

    Writes `output_dir` (default `<MODEL>-onnx`) with model.onnx, config.json,
    preprocessor_config.json and onnx_check.json; see the module docstring for the check. Raises
    KoinError when onnxruntime's logits differ from PyTorch's by more than `tolerance`.
    """
    if not tolerance > 0:
        raise KoinError(f"--tolerance must be above 0, got {tolerance}.")
    onnxruntime = _onnx_modules()
    target = Path(output_dir).expanduser() if output_dir else default_output_dir(model)
    _check_output_dir(target, model)

    from koin_hf.evaluation.predict import checked_source
    from koin_hf.evaluation.scoring import ImageScorer, preprocess_images

    # Check photos first: a bad file costs a moment, not a model load.
    if check_images:
        names = [str(image) for image in check_images]
        sources: list[str | bytes] = [checked_source(n, max_megapixels) for n in names]
    else:
        sources = list(synthetic_check_photos())
        names = [f"synthetic photo {i}" for i in range(len(sources))]

    scorer = ImageScorer(model, device="cpu")
    pixel_values = preprocess_images(scorer.image_processor, sources, max_megapixels)
    reference = scorer.forward(pixel_values)
    # Export a plain-layout copy: channels-last weights (koin-hf's CPU speed-up) are a runtime
    # choice of PyTorch, not part of the model.
    scorer.model.to(memory_format=torch.contiguous_format)

    staging = staging_folder_beside(target, "export")
    try:
        onnx_path = staging / ONNX_FILE
        opset = _export(scorer.model, pixel_values[:2].contiguous(), onnx_path)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        batched = session.run(["logits"], {"pixel_values": pixel_values.numpy()})[0]
        single = np.concatenate(
            [
                session.run(["logits"], {"pixel_values": pixel_values[i : i + 1].numpy()})[0]
                for i in range(len(pixel_values))
            ]
        )
        diff = float(max(np.abs(batched - reference).max(), np.abs(single - reference).max()))
        same_top1 = bool((batched.argmax(1) == reference.argmax(1)).all())
        if not np.isfinite(diff) or diff > tolerance:
            raise KoinError(
                f"onnxruntime's logits differ from PyTorch's by up to {diff:.3g} on "
                f"{len(names)} check images (tolerance {tolerance:g}): the export was not written."
            )
        _save_description(scorer, staging)
        result = ExportResult(
            output_dir=str(target),
            onnx_file=str(target / ONNX_FILE),
            num_check_images=len(names),
            max_abs_diff=diff,
            tolerance=tolerance,
            opset=opset,
            same_top1=same_top1,
        )
        record = {
            **asdict(result),
            "source": Path(str(model)).name if Path(str(model)).is_dir() else str(model),
            "check_images": [Path(n).name for n in names],
            "checked_batch_sizes": [len(names), 1],
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "input": {"name": "pixel_values", "shape": ["batch", *pixel_values.shape[1:]]},
            "output": {"name": "logits", "shape": ["batch", int(reference.shape[1])]},
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for key in ("output_dir", "onnx_file", "files"):
            record.pop(key)
        (staging / CHECK_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        written = sorted(p.name for p in staging.iterdir() if p.name != ONNX_FILE)
        result = replace(result, files=(ONNX_FILE, *written))
        if target.is_dir():
            shutil.rmtree(target)  # holds only an earlier export's files (checked above)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result
