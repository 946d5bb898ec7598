"""`python -m koin_hf.training ARGS` and `accelerate launch -m koin_hf.training ARGS`: train.py from any install."""

import sys

from koin_hf.runtime import configure_process

# Before torch is imported: the OpenMP wait policy is read when torch loads (koin_hf.runtime).
configure_process()

from koin_hf.training.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="python -m koin_hf.training"))
