"""Finetuning: a fresh (rs)LoRA on the base model over hindsight chat examples, with PyTorch Lightning + PEFT.

    data.py     chat examples -> token ids with response-only labels, length-grouped micro-batches, archives ->
                hindsight examples (load_examples)
    lora.py     the base model with a fresh adapter, the merged export
    module.py   the LightningModule (loss, optimizer, schedule) and the LightningDataModule
    cluster.py  ranks, the SLURM cluster environment, strategy and precision
    checks.py   the config checks (finetune, finetune.data, finetune.archives)
    recipe.py   finetune(examples, cfg.finetune, run_dir): the recipe, one named step each
    run.py      run_train(cfg, run_dir): the train job (python train.py = python -m soar.finetune)

Importing the package imports nothing heavy: torch, transformers and Lightning come with the modules that use them.
"""
