"""`koin calibrate MODEL`: temperature + rejection threshold for a target false-accept rate."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fit a temperature (validation log-likelihood) and the threshold on the calibrated top "
        "score that accepts at most --target_far of impostors; fold the temperature into the "
        "head and store both in MODEL/config.json (koin_open_set). koin predict then answers "
        "'unknown' below the threshold."
    )
    parser.add_argument("model", help="a local koin-hf model folder (it is rewritten)")
    parser.add_argument(
        "--dataset", default=None, help="prepared KoIn dataset (default: the run record's)"
    )
    parser.add_argument(
        "--target_far",
        type=float,
        default=0.01,
        help="share of impostor photos the threshold may accept (default 0.01)",
    )
    parser.add_argument(
        "--score",
        choices=["prototype_cosine", "msp"],
        default="prototype_cosine",
        help="what the threshold applies to: the largest cosine with the class prototypes "
        "(default) or the calibrated top softmax score",
    )
    parser.add_argument(
        "--known_unknowns",
        default=None,
        metavar="DATASET",
        help="a prepared dataset whose 'unknown' config holds people outside the model, added "
        "to the impostors (not the people you evaluate on)",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from koin_hf.training.calibrate import calibrate_model

    settings = calibrate_model(
        args.model,
        args.dataset,
        target_far=args.target_far,
        score=args.score,
        known_unknowns=args.known_unknowns,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
    )
    fitted = settings["fitted_on"]
    print(f"temperature {settings['temperature']:.4f} (folded into the head)")
    if fitted.get("temperature_note"):
        print(f"  note: {fitted['temperature_note']}")
    print(
        f"validation ECE {fitted['validation_ece_before']:.4f} -> "
        f"{fitted['validation_ece_after']:.4f} ({fitted['validation_images']} images)"
    )
    impostors = ", ".join(f"{n} {what}" for what, n in fitted["impostors"].items())
    print(
        f"threshold {settings['threshold']:.4f} on the {settings['score']} score for FAR "
        f"{settings['target_far']:g} ({impostors}); on pipeline()'s top score: "
        f"{settings['msp_threshold']:.4f}"
    )
    print(f"wrote {args.model}/config.json (koin_open_set)")
    return 0
