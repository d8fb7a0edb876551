"""The supervised training loop shared by the base's pretraining (01) and self-distillation (06).

    from cogito_lib.train import SFTExample, LoopConfig, train_sft, prepare_lora, save_adapter

`python -m cogito_lib.train --profile P --run-dir D [--variant V ...]` trains notebook 06's variants
(`cogito_lib.distill`) in this process, or data-parallel under `accelerate launch`.
"""
from .loop import (CHECKPOINT, LORA_TARGETS, LoopConfig, SFTExample, batch_order, load_checkpoint, lr_at,
                   prepare_lora, save_adapter, save_checkpoint, summarise_log, train_sft,
                   trainable_state)

__all__ = ["CHECKPOINT", "LORA_TARGETS", "LoopConfig", "SFTExample", "batch_order", "load_checkpoint", "lr_at",
           "prepare_lora", "save_adapter", "save_checkpoint", "summarise_log", "train_sft",
           "trainable_state"]
