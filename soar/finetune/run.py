"""The train job: archives -> hindsight examples -> LoRA finetune of the base model -> adapter/ + merged/.

Run dir layout: examples.jsonl (the training data), data_stats.json, checkpoints/ (Lightning, adapter-only,
last.ckpt = resume point), train_log.jsonl (one row per optimizer step), adapter/ (PEFT), merged/ (HF model +
tokenizer: the next iteration's model), metrics.json, run.json (soar.runs' marker: "finished" is written last).
Re-running in the same run dir skips a finished run and resumes an interrupted one from checkpoints/last.ckpt.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from soar.finetune.data import (
    ChatExample,
    ChatLike,
    load_examples,
    padding_fraction,
    read_examples,
    tokenize_examples,
    write_examples,
)
from soar.hardware import Hardware, choose_dtype, detect
from soar.runs import MARKER, SearchRun, TrainRun
from soar.io import replace_dir, write_json
from soar.tracking import NullTracker, Tracker, flatten, tracking

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")
LIGHTNING_PRECISION = {"bfloat16": "bf16-mixed", "float16": "16-mixed", "float32": "32-true"}


# -- configuration checks ---------------------------------------------------------------------------------------
def _positive(ft: DictConfig, key: str, minimum: float = 1) -> None:
    value = OmegaConf.select(ft, key)
    if not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"finetune.{key}={value!r}: must be a number >= {minimum}")


def check_finetune_config(ft: DictConfig) -> None:
    """Fail on bad values before any model is loaded; every message names the key."""
    from soar.finetune.lora import DTYPES, check_quantization
    from soar.finetune.module import OPTIMIZERS

    for key in ("max_seq_len", "epochs", "lora.r", "batch.size", "batch.micro_size"):
        _positive(ft, key)
    _positive(ft, "optim.lr", 0)
    _positive(ft, "optim.weight_decay", 0)
    _positive(ft, "lora.alpha", 0)
    if not 0 <= ft.lora.dropout < 1:
        raise ValueError(f"finetune.lora.dropout={ft.lora.dropout}: must be in [0, 1)")
    if not 0 <= ft.optim.warmup_ratio < 1:
        raise ValueError(f"finetune.optim.warmup_ratio={ft.optim.warmup_ratio}: must be in [0, 1)")
    if ft.batch.size % ft.batch.micro_size:
        raise ValueError(f"finetune.batch.size={ft.batch.size} (examples per optimizer step) must be a multiple of "
                         f"finetune.batch.micro_size={ft.batch.micro_size} (x the number of devices)")
    if ft.batch.group_size is not None:
        _positive(ft, "batch.group_size")
    if ft.checkpoint.every_n_steps is not None:
        _positive(ft, "checkpoint.every_n_steps")
    if ft.optim.name not in OPTIMIZERS:
        raise ValueError(f"finetune.optim.name={ft.optim.name!r}: allowed: {', '.join(OPTIMIZERS)}")
    if not list(ft.lora.target_modules):
        raise ValueError("finetune.lora.target_modules is empty")
    for key in ("load_dtype", "save_dtype"):
        if ft[key] not in DTYPES:
            raise ValueError(f"finetune.{key}={ft[key]!r}: allowed: {', '.join(DTYPES)}")
    if str(ft.trainer.precision) not in PRECISIONS:
        raise ValueError(f"finetune.trainer.precision={ft.trainer.precision!r}: allowed: {', '.join(PRECISIONS)}")
    check_quantization(ft.quantization)
    if ft.optim.name == "adamw_8bit":
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("finetune.optim.name=adamw_8bit needs bitsandbytes: pip install bitsandbytes")


def check_data_config(cfg: DictConfig) -> None:
    """The hindsight data node and the archives (checked here so the message names the full key)."""
    from soar.hindsight import MODES, REFINE_SELECTIONS, SAMPLE_SELECTIONS

    data = cfg.finetune.data
    for key, allowed in (("mode", MODES), ("sample_selection", SAMPLE_SELECTIONS),
                         ("refine_selection", REFINE_SELECTIONS)):
        if data[key] not in allowed:
            raise ValueError(f"finetune.data.{key}={data[key]!r}: allowed: {', '.join(allowed)}")
    for key in ("per_task", "refine_per_task"):
        if not isinstance(data[key], int) or data[key] < 0:
            raise ValueError(f"finetune.data.{key}={data[key]!r}: must be an integer >= 0")
    if not (isinstance(data.use_test, bool) or data.use_test == "auto"):
        raise ValueError(f"finetune.data.use_test={data.use_test!r}: allowed: auto (ground truth only from "
                         "training-split archives), true (always, with a warning), false (never)")
    archives = list(cfg.finetune.archives or [])
    if not archives:
        raise ValueError("finetune.archives is empty: give the search run dir(s) whose programs to learn from, "
                         "e.g. finetune.archives=[outputs/search/2025-01-01/12-00-00]")
    for d in archives:
        run = SearchRun(Path(d))
        if not run.archive.exists():
            raise FileNotFoundError(f"finetune.archives: {d} has no programs.parquet (not a search run dir)")
        if not run.finished:
            raise ValueError(f"finetune.archives: {d} is a search that is not finished (soar.runs: {MARKER}); "
                             "resume it first (python search.py hydra.run.dir=<that dir> with its overrides)")


# -- helpers -----------------------------------------------------------------------------------------------------
def global_rank() -> int:
    """This process's rank from the launcher's environment (0 before Lightning has spawned anything). LOCAL_RANK
    before SLURM_PROCID: ranks Lightning starts inside a one-task SLURM job inherit SLURM_PROCID=0."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def resolve_precision(precision: str, hardware: Hardware) -> str:
    """`auto`: the Lightning precision of soar's one dtype decision (bf16-mixed where bf16 is native, 16-mixed on a
    GPU without it, 32-true on a CPU without it); a bf16 precision forced on a CPU without native bf16 warns."""
    key = "finetune.trainer.precision"
    if precision == "auto":
        return LIGHTNING_PRECISION[choose_dtype("auto", hardware, key)]
    if precision.startswith("bf16"):
        choose_dtype("bfloat16", hardware, key)
    return precision


def _strategy(value: Any) -> Any:
    if isinstance(value, DictConfig) and "_target_" in value:  # e.g. an FSDPStrategy with its options
        from hydra.utils import instantiate

        return instantiate(value)
    return value


def cluster_plugins() -> list[Any]:
    """Lightning's cluster environment under SLURM; [] elsewhere (Lightning's own detection, unchanged).

    Requeue belongs to submitit (hydra/launcher=slurm*): it requeues the job on timeout or preemption and the run
    resumes from checkpoints/last.ckpt. Lightning's SLURM auto-requeue is therefore off, or both would requeue.
    One SLURM task per device (hydra/launcher=slurm_ddp: srun started every rank): SLURMEnvironment. A single task
    (hydra/launcher=slurm, or a train stage of soar.loop): the job behaves as one machine and Lightning starts the
    other ranks itself if there are several devices (LightningEnvironment)."""
    from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment

    if not SLURMEnvironment.detect():
        return []
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return [SLURMEnvironment(auto_requeue=False)]
    return [LightningEnvironment()]


def check_launch(trainer: Any) -> None:
    """Several devices in ONE process started by submitit: Lightning would re-run submitit's entry point for each
    rank. SLURM must start one task per device instead."""
    import sys

    from pytorch_lightning.plugins.environments import LightningEnvironment

    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    under_submitit = main is not None and str(main.name).startswith("submitit")
    env = getattr(trainer.strategy, "cluster_environment", None)
    if under_submitit and trainer.num_devices > 1 and isinstance(env, LightningEnvironment):
        raise ValueError(f"finetune.trainer.devices gives {trainer.num_devices} devices to one SLURM task: "
                         f"launch train.py with hydra/launcher=slurm_ddp (one task per GPU, "
                         f"hydra.launcher.gpus_per_node={trainer.num_devices}), or set finetune.trainer.devices=1")


# -- the finetune itself -------------------------------------------------------------------------------------------
def finetune(examples: Sequence[ChatLike], ft: DictConfig, run_dir: Path, *, seed: int = 0,
             tracker: Tracker | None = None, callbacks: Sequence[Any] = (),
             extra_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Finetune a fresh LoRA on `ft.base_model` over `examples` (objects with .messages and .response).

    Writes checkpoints/, train_log.jsonl, adapter/, merged/, metrics.json (with `extra_metrics`) and, last, the
    finished marker (soar.runs.TrainRun) in `run_dir`; returns the metrics.
    A finished run dir is left alone (its metrics are returned); an interrupted one resumes from
    checkpoints/last.ckpt: the end of its last epoch, or with `checkpoint.every_n_steps` its last step checkpoint,
    mid-epoch, on exactly the micro-batches it had not trained on yet."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from transformers import AutoTokenizer

    from soar.finetune.lora import base_model_path, load_lora_model, save_merged
    from soar.finetune.data import EpochProgress
    from soar.finetune.module import ChatDataModule, LoraModule

    run_dir = Path(run_dir)
    run = TrainRun(run_dir)
    if run.finished:
        log.info("finetune: %s is finished; skipping", run_dir)
        return {**run.metrics(), "skipped": True}
    check_finetune_config(ft)
    run_dir.mkdir(parents=True, exist_ok=True)
    if global_rank() == 0:
        run.start()
    tracker = tracker or NullTracker()
    t_start = time.perf_counter()

    path = base_model_path(ft)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    data = tokenize_examples(tokenizer, examples, int(ft.max_seq_len))
    if data.n_dropped:
        log.warning("finetune: dropped %d of %d examples longer than finetune.max_seq_len=%d (longest %d tokens)",
                    data.n_dropped, len(examples), ft.max_seq_len, max(data.dropped_lengths))
    if not data.input_ids:
        raise ValueError(f"finetune: no example to train on ({len(examples)} given, {data.n_dropped} longer than "
                         f"finetune.max_seq_len={ft.max_seq_len})")

    accelerator = ft.trainer.accelerator
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    precision = resolve_precision(str(ft.trainer.precision), detect(on_gpu))
    ckpt_dir = run_dir / "checkpoints"
    steps = ft.checkpoint.every_n_steps  # last.ckpt mid-epoch too: a requeued job loses at most that many steps
    checkpoints = [ModelCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:02d}", auto_insert_metric_name=False,
                                   every_n_epochs=1, save_top_k=int(ft.checkpoint.save_top_k), save_last=not steps,
                                   save_on_train_epoch_end=True)]
    if steps:  # one writer of last.ckpt (two would write last.ckpt and last-v1.ckpt); it also saves at epoch ends
        checkpoints.append(ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=int(steps), save_top_k=0,
                                           save_last=True, save_on_train_epoch_end=True))
    trainer = pl.Trainer(
        accelerator=accelerator, devices=ft.trainer.devices, strategy=_strategy(ft.trainer.strategy),
        num_nodes=int(ft.trainer.num_nodes), precision=precision, max_epochs=int(ft.epochs),
        gradient_clip_val=ft.optim.max_grad_norm, logger=False, callbacks=[*checkpoints, *callbacks],
        default_root_dir=str(run_dir), use_distributed_sampler=False, num_sanity_val_steps=0,
        enable_progress_bar=bool(ft.trainer.progress_bar), enable_model_summary=False, limit_val_batches=0,
        plugins=cluster_plugins() or None)
    check_launch(trainer)
    world = trainer.num_devices * trainer.num_nodes
    per_step = int(ft.batch.micro_size) * world
    if int(ft.batch.size) % per_step:
        raise ValueError(f"finetune.batch.size={ft.batch.size} (examples per optimizer step) is not a multiple of "
                         f"finetune.batch.micro_size={ft.batch.micro_size} x {world} device(s)")
    accumulate = int(ft.batch.size) // per_step
    trainer.accumulate_grad_batches = accumulate

    pl.seed_everything(seed, workers=True, verbose=False)  # the adapter's initialisation
    model = load_lora_model(ft, path)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log_file = run_dir / "train_log.jsonl"

    def on_step(row: dict[str, Any]) -> None:
        with log_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        tracker.log({f"train/{k}": row[k] for k in ("loss", "lr", "tokens_per_s", "epoch")}, step=row["step"])
        if row["step"] % int(ft.trainer.log_every_n_steps) == 0:
            log.info("step %d epoch %d loss %.4f lr %.2e %.0f tok/s", row["step"], row["epoch"], row["loss"],
                     row["lr"], row["tokens_per_s"])

    progress = EpochProgress()  # micro-batches done in the epoch: saved with checkpoints, skipped on resume
    module = LoraModule(model, ft.optim, on_step=on_step, progress=progress)
    dm = ChatDataModule(data, pad_id, int(ft.batch.micro_size), accumulate, ft.batch.group_size, seed, progress)
    resume = ckpt_dir / "last.ckpt"
    resume_from = str(resume) if resume.exists() else None
    if resume_from:
        log.info("finetune: resuming from %s", resume_from)
    t_fit = time.perf_counter()
    with warnings.catch_warnings():  # the epoch position is restored with the module (data.EpochProgress)
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended and your dataloader is not resumable")
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
    fit_seconds = time.perf_counter() - t_fit
    if trainer.interrupted:
        raise RuntimeError(f"finetune interrupted; re-run in {run_dir} to resume from its last checkpoint")
    if not trainer.is_global_zero:
        return {}

    # -- outputs (rank 0): adapter, merged model, metrics (last) --
    adapter = run_dir / "adapter"
    with replace_dir(adapter) as tmp:
        module.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    module.model = None
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    t_merge = time.perf_counter()
    save_merged(path, adapter, run_dir / "merged", tokenizer, str(ft.save_dtype))
    merge_seconds = time.perf_counter() - t_merge

    history = module.history  # authoritative: drops rows of a crashed partial epoch that was trained again
    log_file.write_text("".join(json.dumps(row) + "\n" for row in history))
    sample = _grouped_padding(data, int(ft.batch.micro_size), ft.batch.group_size, seed)
    metrics = {
        "base_model": str(ft.base_model),
        "n_examples": len(examples),
        "n_train": len(data.input_ids),
        "n_dropped": data.n_dropped,
        "max_seq_len": int(ft.max_seq_len),
        "n_tokens": sum(data.lengths),
        "n_label_tokens": sum(sum(1 for y in lab if y != -100) for lab in data.labels),
        "epochs": int(ft.epochs),
        "steps": trainer.global_step,
        "batch_size": int(ft.batch.size),
        "micro_batch_size": int(ft.batch.micro_size),
        "accumulate": accumulate,
        "world_size": world,
        "precision": precision,
        "device": "cuda" if on_gpu else "cpu",
        "hardware": str(detect(on_gpu)),
        "trainable_params": n_trainable,
        "padding_fraction": sample,
        "train_loss": module.epoch_losses[-1] if module.epoch_losses else None,
        "train_loss_by_epoch": module.epoch_losses,
        "train_loss_first_step": history[0]["loss"] if history else None,
        "train_loss_last_step": history[-1]["loss"] if history else None,
        "tokens_per_s": module.real_tokens / max(module.train_seconds, 1e-9),  # non-pad tokens, this process
        "train_seconds": module.train_seconds,
        "fit_seconds": fit_seconds,
        "merge_seconds": merge_seconds,
        "seconds": time.perf_counter() - t_start,
        "resumed_from": resume_from,
        **(extra_metrics or {}),
    }
    write_json(run.metrics_file, metrics)
    run.finish()
    return metrics


def _grouped_padding(data: Any, micro: int, group_size: int | None, seed: int) -> float:
    """Padding fraction of epoch 0's micro-batches (what the length grouping achieved)."""
    from soar.finetune.data import LengthGroupedBatches

    return padding_fraction(LengthGroupedBatches(data.lengths, micro, group_size=group_size, seed=seed)
                            .epoch_batches(0), data.lengths)


# -- the job -------------------------------------------------------------------------------------------------------
def no_examples_message(cfg: DictConfig, stats: dict[str, Any]) -> str:
    """Why hindsight gave nothing to train on, in the terms of the data config."""
    data, f, r = cfg.finetune.data, stats["filters"], stats["refine"]
    return (f"train: hindsight built no example from {list(cfg.finetune.archives)} (finetune.data.mode={data.mode}, "
            f"sample_selection={data.sample_selection}): {f['programs']} programs on {stats['tasks']} task(s) of "
            f"data={cfg.data.name}/{cfg.data.split}, {f['kept']} passed the filters; refinement data needs fully "
            f"correct refined children ({r['correct_children']} of {r['children']} children) and "
            "sample_selection=correct needs correct programs. A weak model may need a larger search budget first.")


def run_train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The train job described by `cfg` in `run_dir`; returns the metrics also written to metrics.json."""
    from soar.finetune.lora import base_model_path

    run_dir = Path(run_dir)
    if (run := TrainRun(run_dir)).finished:
        log.info("train: %s is finished; skipping", run_dir)
        return run.metrics()
    check_finetune_config(cfg.finetune)
    examples_file, stats_file = run_dir / "examples.jsonl", run_dir / "data_stats.json"
    if examples_file.exists() and stats_file.exists():  # resuming: train on exactly the same data
        examples: list[Any] = read_examples(examples_file)
        stats = json.loads(stats_file.read_text())
    else:
        check_data_config(cfg)
        base_model_path(cfg.finetune)  # fail on a missing base model before the (slow) data build
        examples, stats = load_examples(cfg)
        if not examples:
            raise ValueError(no_examples_message(cfg, stats))
        if (max_n := cfg.finetune.max_examples) is not None and len(examples) > int(max_n):
            import random  # a seeded random subset, in the original order (hindsight's order is by task)

            keep = sorted(random.Random(int(cfg.seed)).sample(range(len(examples)), int(max_n)))
            examples = [examples[i] for i in keep]
            stats = {**stats, "max_examples": int(max_n)}
        if global_rank() == 0:
            write_examples(examples_file, examples)
            write_json(stats_file, stats)
    log.info("train: %d examples (%s)", len(examples), ", ".join(
        f"{k}={v}" for k, v in stats.items() if isinstance(v, (int, float))))
    with (tracking(cfg, "train", run_dir) if global_rank() == 0 else _null()) as tracker:
        tracker.summary(flatten({"data": stats}, "train"))
        metrics = finetune(examples, cfg.finetune, run_dir, seed=int(cfg.seed), tracker=tracker,
                           extra_metrics={"iteration": cfg.iteration, "data": stats})
        if metrics:
            tracker.summary(flatten({k: v for k, v in metrics.items() if k != "data"}, "train"))
            tracker.artifact("adapter", "model", run_dir / "adapter")
            tracker.artifact("merged", "model", run_dir / "merged")
            tracker.artifact("examples", "dataset", examples_file)
    return metrics


class _null:
    def __enter__(self) -> Tracker:
        return NullTracker()

    def __exit__(self, *exc: Any) -> None:
        return None


__all__ = ["ChatExample", "check_data_config", "check_finetune_config", "finetune", "load_examples", "run_train"]
