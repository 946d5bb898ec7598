"""Fine-tune an image classifier on KoIn: `accelerate launch train.py [ARGS | args.yaml]`.

With no arguments it trains the default model on the embedded synthetic KoIn and saves a
pipeline-ready model under outputs/. `python train.py --help` lists every flag.
"""

import sys

from koin_hf.training.run import main

if __name__ == "__main__":
    sys.exit(main())
