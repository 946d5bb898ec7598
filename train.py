"""Fine-tune an image classifier on KoIn: `accelerate launch train.py [ARGS | args.yaml]`.

With no arguments it trains the default model on the embedded synthetic KoIn and saves a
pipeline-ready model under outputs/. `python train.py --help` lists every flag.
"""

import sys

from koin_hf.runtime import configure_process

# Before torch is imported: the OpenMP wait policy is read when torch loads (koin_hf.runtime).
configure_process()

from koin_hf.training.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
