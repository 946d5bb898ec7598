"""koin-hf's shipped presets: `paper/*.yaml` (train.py arguments) and `accelerate/*.yaml` (launch configs)."""
