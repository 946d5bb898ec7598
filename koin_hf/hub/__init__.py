"""The publishing stage: model and dataset cards, and pushes to the Hugging Face Hub.

`cards` holds what both cards share (KoIn's references, escaping, templates); `model_card` and
`dataset_card` render one each; `push` uploads a model or dataset folder in one commit.
"""
