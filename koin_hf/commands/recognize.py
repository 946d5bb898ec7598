"""`koin recognize MODEL IMAGE...`: find every face, name it (top-3), draw the boxes."""

from __future__ import annotations

import argparse
import json

from koin_hf.data.images import MAX_MEGAPIXELS_HELP
from koin_hf.faces.detection import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, DETECTORS


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a koin-hf output dir, a Hub id, or any image classifier")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (or URLs)")
    parser.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=sorted(name for name in DETECTORS if name != "recorded"),
        help=f"face detector (default {DEFAULT_DETECTOR}; docs/FACES.md compares them)",
    )
    parser.add_argument("--top_k", type=int, default=3, help="names per face (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--output_dir", default=None, help="write an annotated PNG per image (boxes and names) here"
    )
    parser.add_argument(
        "--max_side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"the detector looks at a copy this many pixels on its longest side (default {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--max_megapixels", type=float, default=None, help=MAX_MEGAPIXELS_HELP)
    parser.add_argument(
        "--closed_set",
        action="store_true",
        help="always name one of the model's people, even when koin calibrate set an "
        "'unknown' threshold",
    )


def run(args: argparse.Namespace) -> int:
    from koin_hf.evaluation.open_set import split_unknown
    from koin_hf.evaluation.recognize import recognize

    results = recognize(
        args.model,
        args.images,
        detector=args.detector,
        top_k=args.top_k,
        output_dir=args.output_dir,
        max_side=args.max_side,
        device=args.device,
        max_megapixels=args.max_megapixels,
        open_set=not args.closed_set,
    )
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    for result in results:
        faces = result["faces"]
        print(f"{result['image']}: {len(faces)} face(s)")
        for index, face in enumerate(faces, start=1):
            box = ", ".join(f"{v:.0f}" for v in face["box"])
            unknown, ranked = split_unknown(face["predictions"])
            verdict = ""
            if unknown is not None:
                verdict = (
                    f"unknown (score {unknown['score']:.3f} <= threshold "
                    f"{unknown['threshold']:.3f}); closest: "
                )
            names = "  ".join(f"{p['label']} {p['score']:.3f}" for p in ranked)
            print(f"  {index}. [{box}]  {verdict}{names}")
        if result["annotated"]:
            print(f"  annotated: {result['annotated']}")
    return 0
