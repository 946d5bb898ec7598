"""`koin embed MODEL --dataset D`: cache the head-input embeddings of every image, once."""

from __future__ import annotations

import argparse

from koin_hf.data.images import MAX_MEGAPIXELS_HELP, pixel_budget


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compute each image's embedding (what the model's classification head reads) once per "
        "backbone and dataset split, cached as parquet under $KOIN_HF_CACHE/embeddings; koin "
        "probe, calibrate, enroll and evaluate --open_set reuse it."
    )
    parser.add_argument("model", help="a koin-hf output dir, a family name (lite0), a Hub id")
    parser.add_argument(
        "--dataset",
        default=None,
        help="prepared KoIn dataset (default: the one in MODEL's run record)",
    )
    parser.add_argument(
        "--config",
        dest="configs",
        nargs="+",
        default=None,
        metavar="CONFIG",
        help="configs to embed (default: every config of the dataset)",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--refresh", action="store_true", help="recompute even when cached")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--max_megapixels", type=float, default=None, help=MAX_MEGAPIXELS_HELP)


def run(args: argparse.Namespace) -> int:
    from koin_hf.evaluation.embeddings import Embedder, dataset_for, embed_configs

    pixel_budget(args.max_megapixels)
    dataset = dataset_for(args.model, args.dataset)
    embedder = Embedder(args.model, device=args.device)
    found = embed_configs(
        embedder,
        dataset,
        args.configs,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        max_megapixels=args.max_megapixels,
        refresh=args.refresh,
    )
    print(f"backbone fingerprint {embedder.fingerprint[:20]}")
    for name, embeddings in found.items():
        dim = embeddings.features.shape[1]
        print(f"  {name:<16} {len(embeddings):>6} x {dim}  {embeddings.path}")
    return 0
