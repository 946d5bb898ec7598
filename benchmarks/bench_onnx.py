"""ONNX: onnxruntime against PyTorch on the same exported model, batch 1 and batch 32.

The model (default: the default `lite0`, EfficientNet-Lite0 at 224 px with a 10-class head; or
`--model DIR`, e.g. a trained output folder) is exported by `koin export`'s code
(`koin_hf.deploy.onnx_export.export_onnx`, which also checks the logits). Then both run on the
same pre-processed photos of the embedded synthetic KoIn:

* PyTorch:      the model as `koin evaluate` runs it (`ImageScorer.forward`: inference mode,
                channels-last for the EfficientNet families), torch's intra-op threads;
* onnxruntime:  `InferenceSession` on the CPU provider, as many intra-op threads as torch has,
                idle threads sleeping (no spinning), as torch's do under `koin_hf.runtime`.

Pre-processing is outside the timing (both get the same tensors). Contenders alternate in rounds
(the order rotating); the figure is the median over rounds of onnxruntime's images/s divided by
PyTorch's, measured back to back, so load from other processes mostly cancels out.

    python benchmarks/bench_onnx.py
    python benchmarks/bench_onnx.py --model outputs/koin-lite0
    python benchmarks/bench_onnx.py --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import (
    NUM_CLASSES,
    Stopwatch,
    base_parser,
    interleaved,
    machine_description,
    median,
    paired_ratios,
    spread,
    work_dir,
)


def _model_folder(args, root: Path) -> Path:
    if args.model:
        return Path(args.model)
    name = "vit-tiny" if args.quick else "lite0"  # quick: the fastest family to export
    folder = root / f"onnx-bench-{name}"
    if not (folder / "config.json").is_file():
        from koin_hf.models.loading import load_model_and_processor

        labels = [f"person {i}" for i in range(NUM_CLASSES)]
        model, processor, _ = load_model_and_processor(name, labels, seed=0)
        model.eval().save_pretrained(folder)
        processor.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: a fresh lite0)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    args = parser.parse_args(argv)
    from koin_hf.runtime import configure_process

    configure_process()  # as every koin entry point: OMP_WAIT_POLICY=PASSIVE before torch loads
    import torch

    rounds = 2 if args.quick else args.rounds
    repeats = {1: 4 if args.quick else 40, 32: 1 if args.quick else 4}

    import onnxruntime

    from koin_hf.deploy.onnx_export import export_onnx, synthetic_check_photos
    from koin_hf.evaluation.scoring import ImageScorer

    root = work_dir(args.work_dir)
    print(machine_description())
    print(
        f"onnxruntime {onnxruntime.__version__}, torch intra-op threads {torch.get_num_threads()}"
    )
    folder = _model_folder(args, root)
    with Stopwatch() as export_time:
        result = export_onnx(folder, root / f"{folder.name}-bench-onnx")
    print(
        f"model: {folder.name}; exported in {export_time.seconds:.1f} s, "
        f"max |logit difference| {result.max_abs_diff:.2e} on {result.num_check_images} photos"
    )

    scorer = ImageScorer(folder, device="cpu")
    photos = synthetic_check_photos(8)
    pixel_values = scorer.preprocess((photos * 4)[:32])
    print(f"input: {tuple(pixel_values.shape)} float32")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning, as torch's do under koin-hf's runtime set-up; on
    # shared cores a spinning pool steals the other contender's time slices.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        result.onnx_file, options, providers=["CPUExecutionProvider"]
    )

    ratios = {}
    for batch, repeat in repeats.items():
        inputs = pixel_values[:batch].contiguous()
        numpy_inputs = inputs.numpy()

        def torch_run(inputs=inputs, repeat=repeat, batch=batch) -> float:
            scorer.forward(inputs)  # warm
            with Stopwatch() as watch:
                for _ in range(repeat):
                    scorer.forward(inputs)
            return batch * repeat / watch.seconds

        def onnx_run(numpy_inputs=numpy_inputs, repeat=repeat, batch=batch) -> float:
            session.run(["logits"], {"pixel_values": numpy_inputs})  # warm
            with Stopwatch() as watch:
                for _ in range(repeat):
                    session.run(["logits"], {"pixel_values": numpy_inputs})
            return batch * repeat / watch.seconds

        print(f"\nbatch {batch} ({repeat} forwards per round, images/s):")
        results = interleaved({"PyTorch": torch_run, "onnxruntime": onnx_run}, rounds)
        ratio = median(paired_ratios(results["onnxruntime"], results["PyTorch"]))
        ratios[batch] = ratio
        for name, values in results.items():
            print(f"  {name:<12} median {median(values):,.1f} img/s (range {spread(values)})")
        print(f"  onnxruntime / PyTorch: {ratio:.2f}x (median of {rounds} paired rounds)")

    diff = np.abs(
        session.run(["logits"], {"pixel_values": pixel_values.numpy()})[0]
        - scorer.forward(pixel_values)
    ).max()
    print(
        f"\nsummary: onnxruntime / PyTorch images/s: batch 1 {ratios[1]:.2f}x, "
        f"batch 32 {ratios[32]:.2f}x; max |logit difference| at batch 32 {diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
