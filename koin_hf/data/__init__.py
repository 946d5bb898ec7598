"""The data stage: raw photos in, a prepared dataset out, and batches for a model.

`archive` and `images` read what users have (zips, every kind of photo); `prepare` runs the KoIn
builder (dataset_script/koin.py) and exports parquet; `loading` reads a prepared dataset or a Hub
one; `sampling` carves validation and few-shot splits; `default_dataset` is the embedded synthetic
KoIn; `transforms` and `mapped_pages` turn rows into tensors with flat memory.
"""
