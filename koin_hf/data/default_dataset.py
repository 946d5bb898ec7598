"""The embedded synthetic KoIn: what train.py and `koin evaluate` use when no dataset is named.

Generated once by `koin_hf.synthetic`, prepared once by `koin_hf.data.prepare`, then reused from the
cache folder (`$KOIN_HF_CACHE`, default ~/.cache/koin_hf).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from filelock import FileLock

from koin_hf.data.prepare import prepare_koin
from koin_hf.hub.provenance import prepared_folder_is_synthetic, read_synthetic_marker
from koin_hf.runtime import STAGE
from koin_hf.synthetic.writer import generate_synthetic_koin

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("KOIN_HF_CACHE", Path.home() / ".cache" / "koin_hf"))


def ensure_default_dataset(seed: int = 0, num_classes: int = 10, verbose: bool = True) -> Path:
    """The embedded synthetic KoIn, generated and prepared once, then reused from the cache.

    A file lock makes concurrent callers (several accelerate processes) wait for the first.
    `verbose=False`: one line per stage (and the synthesis bar) instead of prepare's bars and
    summary.
    """
    base = default_cache_dir() / f"synthetic-koin-c{num_classes}-s{seed}"
    prepared = base / "prepared"
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / ".lock")):
        # A cache from before the synthetic marker existed would get a card that reads as real
        # KoIn: rebuild it (once) so every card says the data is generated.
        if not prepared_folder_is_synthetic(prepared):
            shutil.rmtree(prepared, ignore_errors=True)
            raw = base / "raw"
            if not (raw / "classes.csv").is_file() or read_synthetic_marker(raw) is None:
                shutil.rmtree(raw, ignore_errors=True)
                logger.info(
                    "synthesise: the embedded synthetic KoIn (%d identities, seed %d) in %s",
                    num_classes,
                    seed,
                    raw,
                    extra=STAGE,
                )
                generate_synthetic_koin(raw, num_classes=num_classes, seed=seed)
            logger.info("prepare: %s -> %s", raw, prepared, extra=STAGE)
            prepare_koin(raw, prepared, verbose=verbose)
    return prepared
