"""The train job (python train.py, python -m soar.finetune, a loop's train_<mode> stage): archives -> hindsight
examples -> the finetune recipe (soar.finetune.recipe) -> adapter/ + merged/, tracked as one run of job_type train.

Decisions:
- The data is built once per run dir (examples.jsonl, data_stats.json, next to the recipe's outputs): a resumed
  run trains on exactly the same examples, and checks only the recipe (its data and archives were checked then).
- finetune.max_examples keeps a seeded random subset of the examples, in hindsight's order (by task).
- Only rank 0 writes files and talks to the tracker.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from soar.finetune.checks import check_data_config, check_finetune_config
from soar.finetune.cluster import global_rank
from soar.finetune.data import ChatLike, load_examples, read_examples, write_examples
from soar.finetune.recipe import finetune
from soar.io import write_json
from soar.runs import TrainRun
from soar.tracking import NullTracker, flatten, tracking

log = logging.getLogger(__name__)


def run_train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The train job described by `cfg` in `run_dir`; returns the metrics also written to metrics.json."""
    run = TrainRun(run_dir)
    if run.finished:
        log.info("train: %s is finished; skipping", run.path)
        return run.metrics()
    check_finetune_config(cfg.finetune)
    examples, stats = training_data(cfg, run.path)
    log.info("train: %d examples (%s)", len(examples), ", ".join(
        f"{k}={v}" for k, v in stats.items() if isinstance(v, (int, float))))
    with (tracking(cfg, "train", run.path) if global_rank() == 0 else nullcontext(NullTracker())) as tracker:
        tracker.summary(flatten({"data": stats}, "train"))
        metrics = finetune(examples, cfg.finetune, run.path, seed=int(cfg.seed), tracker=tracker,
                           extra_metrics={"iteration": cfg.iteration, "data": stats})
        if metrics:
            tracker.summary(flatten({k: v for k, v in metrics.items() if k != "data"}, "train"))
            tracker.artifact("adapter", "model", run.path / "adapter")
            tracker.artifact("merged", "model", run.merged)
            tracker.artifact("examples", "dataset", run.path / "examples.jsonl")
    return metrics


def training_data(cfg: DictConfig, run_dir: Path) -> tuple[Sequence[ChatLike], dict[str, Any]]:
    """The run dir's examples and their statistics: those it saved, else built from the archives (after the data
    config, the archives and the base model are checked: all before the slow build) and saved."""
    from soar.finetune.lora import base_model_path

    examples_file, stats_file = run_dir / "examples.jsonl", run_dir / "data_stats.json"
    if examples_file.exists() and stats_file.exists():  # resuming: train on exactly the same data
        return read_examples(examples_file), json.loads(stats_file.read_text())
    check_data_config(cfg)
    base_model_path(cfg.finetune)
    examples, stats = load_examples(cfg)
    if not examples:
        raise ValueError(no_examples_message(cfg, stats))
    if (max_n := cfg.finetune.max_examples) is not None and len(examples) > int(max_n):
        keep = sorted(random.Random(int(cfg.seed)).sample(range(len(examples)), int(max_n)))
        examples = [examples[i] for i in keep]
        stats = {**stats, "max_examples": int(max_n)}
    if global_rank() == 0:
        write_examples(examples_file, examples)
        write_json(stats_file, stats)
    return examples, stats


def no_examples_message(cfg: DictConfig, stats: dict[str, Any]) -> str:
    """Why hindsight gave nothing to train on, in the terms of the data config."""
    data, f, r = cfg.finetune.data, stats["filters"], stats["refine"]
    refine = (f"refinement data (refine_relabel) needs refined children whose outputs differ from their parent's "
              f"({r['same_outputs']} of {r['children']} children reproduce them, {r['code_duplicates']} are code "
              "duplicates)" if data.get("refine_relabel") else
              f"refinement data needs fully correct refined children ({r['correct_children']} of {r['children']} "
              "children)")
    return (f"train: hindsight built no example from {list(cfg.finetune.archives)} (finetune.data.mode={data.mode}, "
            f"sample_selection={data.sample_selection}): {f['programs']} programs on {stats['tasks']} task(s) of "
            f"data={cfg.data.name}/{cfg.data.split}, {f['kept']} passed the filters; {refine} and "
            "sample_selection=correct needs correct programs. A weak model may need a larger search budget first.")
