"""`koin enroll MODEL --name "New Person" IMAGE...`: add a person from a few photos."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Add a person to a model folder from a few photos, without gradient training: a new "
        "head row from the photos' prototype in embedding space, scaled to keep the other "
        "classes' scores comparable. The folder stays pipeline-ready with the new name."
    )
    parser.add_argument("model", help="a local koin-hf model folder (it is rewritten)")
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="photos of the person (5 is plenty)"
    )
    parser.add_argument("--name", required=True, help="the person's name (the new label)")
    parser.add_argument(
        "--dataset",
        default=None,
        help="prepared dataset whose validation photos set the new row's scale (default: the "
        "run record's)",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from koin_hf.training.enroll import enroll

    result = enroll(
        args.model, args.name, args.images, args.dataset, batch_size=args.batch_size,
        device=args.device,
    )  # fmt: skip
    print(
        f"enrolled {result['name']!r} from {len(result['photos'])} photo(s); "
        f"the model now knows {result['labels']} people ({args.model})"
    )
    skipped = result["photos_without_a_face"]
    if skipped:
        print(
            f"{len(skipped)} photo(s) without a face were not used (the model names faces): "
            + ", ".join(skipped)
        )
    return 0
