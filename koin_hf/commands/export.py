"""`koin export MODEL --format onnx [--output_dir D]`: an ONNX copy of a model, checked."""

from __future__ import annotations

import argparse

from koin_hf.data.images import MAX_MEGAPIXELS_HELP


def register(parser: argparse.ArgumentParser) -> None:
    from koin_hf.deploy.onnx_export import DEFAULT_TOLERANCE, FORMATS

    parser.add_argument("model", help="a koin-hf output dir, a Hub id, or any image classifier")
    parser.add_argument(
        "--format", choices=FORMATS, default="onnx", help="export format (default: onnx)"
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        help="folder to write model.onnx, config.json, preprocessor_config.json and "
        "onnx_check.json to (default: MODEL-onnx beside the model folder)",
    )
    parser.add_argument(
        "--check_images",
        nargs="+",
        default=None,
        metavar="IMAGE",
        help="photos to compare onnxruntime with PyTorch on (default: 8 photos of the "
        "embedded synthetic KoIn)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest accepted |onnxruntime - PyTorch| logit (default {DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument("--max_megapixels", type=float, default=None, help=MAX_MEGAPIXELS_HELP)


def run(args: argparse.Namespace) -> int:
    from koin_hf.deploy.onnx_export import export_onnx

    print(f"Exporting {args.model} to ONNX (torch.onnx, dynamic batch) ...", flush=True)
    result = export_onnx(
        args.model,
        args.output_dir,
        check_images=args.check_images,
        tolerance=args.tolerance,
        max_megapixels=args.max_megapixels,
    )
    print(
        f"onnxruntime vs PyTorch on {result.num_check_images} images (batched and one by one): "
        f"max |logit difference| {result.max_abs_diff:.2e} <= {result.tolerance:g}, "
        f"same top-1: {'yes' if result.same_top1 else 'NO'}"
    )
    beside = ", ".join(result.files[1:])
    print(f"Wrote {result.onnx_file} (opset {result.opset}) with {beside}")
    return 0
