"""`python -m koin_hf.train ARGS` and `accelerate launch -m koin_hf.train ARGS`: train.py from any install.

`koin_hf.train` is also the Python API's function (`koin_hf.train(model_name_or_path="vit")`).
Importing this module as `koin_hf.train` would replace that attribute of the package with the
module, so on import (anything but `-m`) the module stands aside: it puts the function in its
own place in `sys.modules`, and `import koin_hf.train` leaves `koin_hf.train` the function.
Run as `-m`, it is `__main__` and the package attribute is never touched.
"""

import sys

import koin_hf
from koin_hf.runtime import configure_process

if __name__ == "__main__":
    # Before torch is imported: the OpenMP wait policy is read when torch loads (koin_hf.runtime).
    configure_process()
    from koin_hf.training.run import main

    sys.exit(main(prog="python -m koin_hf.train"))
else:
    sys.modules[__name__] = koin_hf.train  # type: ignore[assignment]
