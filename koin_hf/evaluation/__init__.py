"""The scoring stage: how good a model is on the KoIn test sets, and what it says about a photo.

`metrics` is the top-k accuracy (an `evaluate` module in `top_k_accuracy/`, shared with Trainer);
`scoring` runs a model over images; `run` is `koin evaluate` (`evaluate_model`); `report` and
`plots` write what it found; `predict` names the people in a few photos.
"""
