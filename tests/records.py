"""A run record as train.py writes it, for tests that need a trained-looking model folder."""

from __future__ import annotations

from koin_hf.run_record import LoraSettings, RunRecord

# A 5-shot LoRA ViT run on a prepared folder named "koin"; tests derive variants with
# dataclasses.replace so every fixture keeps the fields train.py writes.
LORA_VIT_RUN = RunRecord(
    family="vit",
    base_model="google/vit-base-patch16-224-in21k",
    method="lora",
    lora=LoraSettings(r=16, alpha=16, dropout=0.1, target_modules=["query", "value"]),
    shots_per_class=5,
    seed=42,
    num_train_epochs=3,
    precision="bf16",
    dataset="koin",
    dataset_config="normal",
)
