"""The training stage: `train.py`'s arguments, the splits a run sees, the Trainer, one whole run.

`arguments` parses flags and YAML presets; `splits` carves validation and few-shot samples and
loads the test sets; `trainer` is the transformers Trainer with koin-hf's fixes; `run` is one
training run end to end (`run_training`, `main`), saving a pipeline-ready model and its run
record (`koin_hf.run_record`).
"""
