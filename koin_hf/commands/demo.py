"""`koin demo MODEL [--port P] [--share]`: a browser demo of a model (Gradio)."""

from __future__ import annotations

import argparse

from koin_hf.data.images import MAX_MEGAPIXELS_HELP
from koin_hf.faces.detection import DEFAULT_DETECTOR, DETECTORS


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a koin-hf output dir, a Hub id, or any image classifier")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to listen on (default: $GRADIO_SERVER_PORT, else 7860 or the next free one)",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1, this machine "
        "only; 0.0.0.0 for your network)",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="also make a public *.gradio.live link through Gradio's servers (off by default: "
        "anyone with the link can send photos to your model)",
    )
    parser.add_argument("--top_k", type=int, default=3, help="names shown per photo (default 3)")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--max_megapixels", type=float, default=None, help=MAX_MEGAPIXELS_HELP)
    parser.add_argument(
        "--faces",
        action="store_true",
        help="add a Faces tab: every face found, boxed and named (koin recognize's code path)",
    )
    parser.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=sorted(name for name in DETECTORS if name != "recorded"),
        help=f"face detector for --faces (default {DEFAULT_DETECTOR})",
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.deploy.demo import face_function, launch_demo
    from koin_hf.errors import KoinError

    if args.port is not None and not 1 <= args.port <= 65535:
        raise KoinError(f"--port must be between 1 and 65535, got {args.port}.")
    faces = None
    if args.faces:
        faces = face_function(
            args.model,
            detector=args.detector,
            device=args.device,
            max_megapixels=args.max_megapixels,
            top_k=args.top_k,
        )
    launch_demo(
        args.model,
        host=args.host,
        port=args.port,
        share=args.share,
        top_k=args.top_k,
        faces=faces,
        device=args.device,
        max_megapixels=args.max_megapixels,
    )
    return 0
