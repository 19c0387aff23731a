"""Finetuning: a fresh (rs)LoRA on the base model over hindsight chat examples, with PyTorch Lightning + PEFT.

`finetune(examples, cfg.finetune, run_dir)` trains on any objects with `.messages` (system + user) and
`.response`; `run_train(cfg, run_dir)` is the train.py job (archives -> soar.hindsight examples -> finetune).
Heavy imports (torch, transformers, Lightning) happen inside the functions."""
from soar.finetune.data import (
    IGNORE,
    ChatExample,
    Collator,
    LengthGroupedBatches,
    RandomBatches,
    Tokenized,
    padding_fraction,
    read_examples,
    split_chat,
    tokenize_examples,
    write_examples,
)
from soar.finetune.run import check_data_config, check_finetune_config, finetune, run_train

__all__ = [
    "IGNORE",
    "ChatExample",
    "Collator",
    "LengthGroupedBatches",
    "RandomBatches",
    "Tokenized",
    "check_data_config",
    "check_finetune_config",
    "finetune",
    "padding_fraction",
    "read_examples",
    "run_train",
    "split_chat",
    "tokenize_examples",
    "write_examples",
]
