"""The finetune recipe: a fresh (rs)LoRA on `finetune.base_model` over chat examples, one named step each (the cut of
a torchtune recipe). `finetune(examples, cfg.finetune, run_dir)` runs them in order:

    load_data        the tokenizer; the examples as token ids, labels on the response only   (data)
    setup_trainer    the Lightning Trainer: devices, precision, checkpoints, accumulation      (setup)
    build_module     the base model with a fresh seeded adapter, in the LightningModule        (model)
    fit              trainer.fit, resumed from checkpoints/last.ckpt                           (fit)
    export           adapter/ and merged/ (rank 0)                                             (export)
    collect_metrics  what metrics.json says about the run                                      (metrics)

Run dir layout (soar.runs.TrainRun): checkpoints/ (Lightning, adapter-only, last.ckpt = resume point),
train_log.jsonl (one row per optimizer step), adapter/ (PEFT), merged/ (HF model + tokenizer: the next iteration's
model), metrics.json, run.json ("finished" is written last). A finished run dir is left alone; an interrupted one
resumes from checkpoints/last.ckpt. Heavy imports (torch, transformers, Lightning) happen inside the functions.
"""
from __future__ import annotations

import gc
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from soar.finetune.batches import padding_fraction
from soar.finetune.checks import check_finetune_config
from soar.finetune.cluster import check_launch, cluster_plugins, global_rank, resolve_precision, strategy
from soar.finetune.data import IGNORE, ChatLike, Tokenized, tokenize_examples
from soar.hardware import Hardware, detect
from soar.io import replace_dir, write_json
from soar.runs import TrainRun
from soar.tracking import NullTracker, Tracker

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """What the setup step decided."""
    trainer: Any  # pytorch_lightning.Trainer
    precision: str
    hardware: Hardware
    world: int       # devices x nodes
    accumulate: int  # micro-batches per optimizer step on each device


def finetune(examples: Sequence[ChatLike], ft: DictConfig, run_dir: Path, *, seed: int = 0,
             tracker: Tracker | None = None, callbacks: Sequence[Any] = (),
             extra_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Finetune a fresh LoRA on `ft.base_model` over `examples` (objects with .messages and .response).

    Writes checkpoints/, train_log.jsonl, adapter/, merged/, metrics.json (with `extra_metrics`) and, last, the
    finished marker in `run_dir`; returns the metrics ({} on ranks other than 0). A finished run dir is left alone
    (its metrics are returned); an interrupted one resumes from checkpoints/last.ckpt: the end of its last epoch,
    or with `checkpoint.every_n_steps` its last step checkpoint, mid-epoch, on exactly the micro-batches it had not
    trained on yet."""
    from soar.finetune.lora import base_model_path
    from soar.finetune.module import ChatDataModule

    run = TrainRun(run_dir)
    if run.finished:
        log.info("finetune: %s is finished; skipping", run.path)
        return {**run.metrics(), "skipped": True}
    check_finetune_config(ft)
    run.path.mkdir(parents=True, exist_ok=True)
    if global_rank() == 0:
        run.start()
    t_start = time.perf_counter()
    path = base_model_path(ft)
    tokenizer, data = load_data(examples, ft, path)
    setup = setup_trainer(ft, run.path, callbacks)
    module = build_module(ft, path, seed, step_logger(run.log_file, tracker or NullTracker(), ft))
    n_trainable = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    datamodule = ChatDataModule(data, pad_id(tokenizer), int(ft.batch.micro_size), setup.accumulate,
                                ft.batch.group_size, seed, module.progress)
    resumed_from, fit_seconds = fit(setup.trainer, module, datamodule, run.path)
    if not setup.trainer.is_global_zero:
        return {}
    merge_seconds = export(module, tokenizer, path, run, str(ft.save_dtype))
    run.log_file.write_text("".join(json.dumps(row) + "\n" for row in module.history))  # the surviving steps
    metrics = {**collect_metrics(ft, examples, data, setup, module, seed=seed, n_trainable=n_trainable),
               "fit_seconds": fit_seconds, "merge_seconds": merge_seconds, "seconds": time.perf_counter() - t_start,
               "resumed_from": resumed_from, **(extra_metrics or {})}
    write_json(run.metrics_file, metrics)
    run.finish()
    return metrics


# -- data ------------------------------------------------------------------------------------------------------------
def load_data(examples: Sequence[ChatLike], ft: DictConfig, path: str) -> tuple[Any, Tokenized]:
    """The base model's tokenizer and the examples tokenized; examples longer than finetune.max_seq_len are
    dropped (a WARNING counts them), and none left is an error."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    data = tokenize_examples(tokenizer, examples, int(ft.max_seq_len))
    if data.n_dropped:
        log.warning("finetune: dropped %d of %d examples longer than finetune.max_seq_len=%d (longest %d tokens)",
                    data.n_dropped, len(examples), ft.max_seq_len, max(data.dropped_lengths))
    if not data.input_ids:
        raise ValueError(f"finetune: no example to train on ({len(examples)} given, {data.n_dropped} longer than "
                         f"finetune.max_seq_len={ft.max_seq_len})")
    return tokenizer, data


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# -- setup -----------------------------------------------------------------------------------------------------------
def setup_trainer(ft: DictConfig, run_dir: Path, callbacks: Sequence[Any] = ()) -> Setup:
    """The Trainer on the configured devices and precision, with the checkpoint callbacks; the accumulation that
    makes finetune.batch.size examples per optimizer step over all devices."""
    import pytorch_lightning as pl
    import torch

    accelerator = ft.trainer.accelerator
    hardware = detect(accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()))
    precision = resolve_precision(str(ft.trainer.precision), hardware)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=ft.trainer.devices, strategy=strategy(ft.trainer.strategy),
        num_nodes=int(ft.trainer.num_nodes), precision=precision,  # type: ignore[arg-type]  # one of PRECISIONS
        max_epochs=int(ft.epochs),
        gradient_clip_val=ft.optim.max_grad_norm, logger=False,
        callbacks=[*checkpoint_callbacks(ft, run_dir / "checkpoints"), *callbacks],
        default_root_dir=str(run_dir), use_distributed_sampler=False, num_sanity_val_steps=0,
        enable_progress_bar=bool(ft.trainer.progress_bar), enable_model_summary=False, limit_val_batches=0,
        plugins=cluster_plugins() or None)
    check_launch(trainer)
    world = trainer.num_devices * trainer.num_nodes
    per_step = int(ft.batch.micro_size) * world
    if int(ft.batch.size) % per_step:
        raise ValueError(f"finetune.batch.size={ft.batch.size} (examples per optimizer step) is not a multiple of "
                         f"finetune.batch.micro_size={ft.batch.micro_size} x {world} device(s)")
    trainer.accumulate_grad_batches = int(ft.batch.size) // per_step
    return Setup(trainer, precision, hardware, world, trainer.accumulate_grad_batches)


def checkpoint_callbacks(ft: DictConfig, ckpt_dir: Path) -> list[Any]:
    """Epoch checkpoints (save_top_k kept) and last.ckpt, the resume point: at every epoch end, and with
    checkpoint.every_n_steps mid-epoch too (a requeued job loses at most that many steps)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    steps = ft.checkpoint.every_n_steps
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:02d}", auto_insert_metric_name=False,
                                 every_n_epochs=1, save_top_k=int(ft.checkpoint.save_top_k), save_last=not steps,
                                 save_on_train_epoch_end=True)]
    if steps:  # one writer of last.ckpt (two would write last.ckpt and last-v1.ckpt); it also saves at epoch ends
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=int(steps), save_top_k=0,
                                         save_last=True, save_on_train_epoch_end=True))
    return callbacks


# -- model -----------------------------------------------------------------------------------------------------------
def build_module(ft: DictConfig, path: str, seed: int, on_step: Callable[[dict[str, Any]], None]) -> Any:
    """The LoraModule around the base model at `path` with a fresh adapter, initialised from `seed`."""
    import pytorch_lightning as pl

    from soar.finetune.batches import EpochProgress
    from soar.finetune.lora import load_lora_model
    from soar.finetune.module import LoraModule

    pl.seed_everything(seed, workers=True, verbose=False)  # the adapter's initialisation
    # the module's position in the epoch is saved with its checkpoints and shared with the data module
    return LoraModule(load_lora_model(ft, path), ft.optim, on_step=on_step, progress=EpochProgress())


def step_logger(log_file: Path, tracker: Tracker, ft: DictConfig) -> Callable[[dict[str, Any]], None]:
    """One optimizer step's row: appended to train_log.jsonl, sent to the tracker, logged every
    finetune.trainer.log_every_n_steps."""
    every = int(ft.trainer.log_every_n_steps)

    def on_step(row: dict[str, Any]) -> None:
        with log_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        tracker.log({f"train/{k}": row[k] for k in ("loss", "lr", "tokens_per_s", "epoch")}, step=row["step"])
        if row["step"] % every == 0:
            log.info("step %d epoch %d loss %.4f lr %.2e %.0f tok/s", row["step"], row["epoch"], row["loss"],
                     row["lr"], row["tokens_per_s"])

    return on_step


# -- fit -------------------------------------------------------------------------------------------------------------
def fit(trainer: Any, module: Any, datamodule: Any, run_dir: Path) -> tuple[str | None, float]:
    """trainer.fit from checkpoints/last.ckpt when there is one; returns that checkpoint (or None) and the seconds
    fit took."""
    last = run_dir / "checkpoints" / "last.ckpt"
    resume_from = str(last) if last.exists() else None
    if resume_from:
        log.info("finetune: resuming from %s", resume_from)
    t_fit = time.perf_counter()
    with warnings.catch_warnings():  # the epoch position is restored with the module (data.EpochProgress)
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended and your dataloader is not resumable")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.interrupted:
        raise RuntimeError(f"finetune interrupted; re-run in {run_dir} to resume from its last checkpoint")
    return resume_from, time.perf_counter() - t_fit


# -- export ----------------------------------------------------------------------------------------------------------
def export(module: Any, tokenizer: Any, base_path: str, run: TrainRun, save_dtype: str) -> float:
    """adapter/ (PEFT + tokenizer), then merged/: the adapter folded into a fresh load of the base model (the
    trained model is freed first). Returns the seconds the merge took."""
    import torch

    from soar.finetune.lora import save_merged

    adapter = run.path / "adapter"
    with replace_dir(adapter) as tmp:
        module.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    module.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    t_merge = time.perf_counter()
    save_merged(base_path, adapter, run.merged, tokenizer, save_dtype)
    return time.perf_counter() - t_merge


# -- metrics ---------------------------------------------------------------------------------------------------------
def collect_metrics(ft: DictConfig, examples: Sequence[ChatLike], data: Tokenized, setup: Setup, module: Any, *,
                    seed: int, n_trainable: int) -> dict[str, Any]:
    """The run's data, schedule, hardware and losses (the timings are added by `finetune`)."""
    from soar.finetune.batches import LengthGroupedBatches

    history = module.history  # authoritative: drops rows of a crashed partial epoch that was trained again
    micro, group_size = int(ft.batch.micro_size), ft.batch.group_size
    epoch0 = LengthGroupedBatches(data.lengths, micro, group_size=group_size, seed=seed).epoch_batches(0)
    return {
        "base_model": str(ft.base_model),
        "n_examples": len(examples),
        "n_train": len(data.input_ids),
        "n_dropped": data.n_dropped,
        "max_seq_len": int(ft.max_seq_len),
        "n_tokens": sum(data.lengths),
        "n_label_tokens": sum(sum(1 for y in lab if y != IGNORE) for lab in data.labels),
        "epochs": int(ft.epochs),
        "steps": setup.trainer.global_step,
        "batch_size": int(ft.batch.size),
        "micro_batch_size": micro,
        "accumulate": setup.accumulate,
        "world_size": setup.world,
        "precision": setup.precision,
        "device": setup.hardware.device,
        "hardware": str(setup.hardware),
        "trainable_params": n_trainable,
        "padding_fraction": padding_fraction(epoch0, data.lengths),  # what the length grouping achieved
        "train_loss": module.epoch_losses[-1] if module.epoch_losses else None,
        "train_loss_by_epoch": module.epoch_losses,
        "train_loss_first_step": history[0]["loss"] if history else None,
        "train_loss_last_step": history[-1]["loss"] if history else None,
        "tokens_per_s": module.real_tokens / max(module.train_seconds, 1e-9),  # non-pad tokens, this process
        "train_seconds": module.train_seconds,
    }
