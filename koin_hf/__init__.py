"""koin-hf: the KoIn face-recognition benchmark as a first-class Hugging Face citizen."""

__version__ = "0.1.0"
