"""The search job (python search.py, python -m soar.search, a loop's search/heldout stage): `check_config` fails on bad
values before any work; `run_search` gets programs from the configured model (RUNNERS), executes, scores, archives
and summarises them, and writes the run's metrics, per-task results and HTML report."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console

from soar.archive import ProgramArchive
from soar.data import load_split, select_tasks
from soar.engines import LLM_ENGINES
from soar.hardware import check_dtype
from soar.io import write_json
from soar.prompts import prompt_length
from soar.runs import SearchRun
from soar.scoring import VOTE_METHODS, summarize
from soar.search.cost import COLUMNS as COST_COLUMNS
from soar.search.cost import DEFAULT_GPU_HOUR_USD, cost_summary, task_costs
from soar.search.ensemble import run_ensemble
from soar.search.fewshot import archive_split
from soar.search.llm import run_llm
from soar.search.refine import check_refine
from soar.search.replay import run_replay
from soar.search.results import ROW_COLUMNS, per_task_rows, run_summary, scored_kinds, summary_table
from soar.search.rex import SELECTORS
from soar.search.shards import PLACEMENTS, check_shards, run_shard, run_sharded
from soar.tracking import flatten, tracking
from soar.weights import resolve_model

log = logging.getLogger(__name__)
SCORED_COLUMNS = [*ROW_COLUMNS, "kind", *COST_COLUMNS[1:]]  # what the results, sample-only and cost read
RUNNERS = {"replay": run_replay, "pool": run_ensemble, "vllm": run_llm, "hf": run_llm}


def check_config(cfg: DictConfig) -> None:
    """Fail before any work on values that would only break later."""
    if cfg.model.engine not in RUNNERS:
        raise ValueError(f"model.engine={cfg.model.engine!r}: allowed: {', '.join(RUNNERS)}")
    if cfg.scoring.vote not in VOTE_METHODS:
        raise ValueError(f"scoring.vote={cfg.scoring.vote!r}: allowed: {', '.join(VOTE_METHODS)}")
    if cfg.scoring.attempts < 1:
        raise ValueError(f"scoring.attempts={cfg.scoring.attempts}: must be >= 1")
    if cfg.execution.batch_size < 1:
        raise ValueError(f"execution.batch_size={cfg.execution.batch_size}: must be >= 1")
    if cfg.search.refine.selector not in SELECTORS:
        raise ValueError(f"search.refine.selector={cfg.search.refine.selector!r}: allowed: {', '.join(SELECTORS)}")
    for phase in ("sample", "refine"):
        for key in ("budget", "n", "max_tokens"):
            if cfg.search[phase][key] < (0 if key == "budget" else 1):
                raise ValueError(f"search.{phase}.{key}={cfg.search[phase][key]}: must be positive")
    if cfg.model.engine in LLM_ENGINES:
        check_dtype(cfg.model.dtype)
    for key in ("stop_at_code", "use_fewshot"):
        if not isinstance(cfg.search.get(key), bool):
            raise ValueError(f"search.{key}={cfg.search.get(key)!r}: must be true or false")
    if not isinstance(cfg.search.get("answer_prefix", ""), (str, type(None))):
        raise ValueError(f"search.answer_prefix={cfg.search.answer_prefix!r}: must be a string or null")
    if cfg.search.refine.islands < 1:
        raise ValueError(f"search.refine.islands={cfg.search.refine.islands}: must be >= 1")
    archives = cfg.search.get("fewshot_archives", [])
    if not isinstance(archives, (list, ListConfig)) or not all(isinstance(d, str) for d in archives):
        raise ValueError(f"search.fewshot_archives={archives!r}: must be a list of search run dirs")
    for d in archives:
        archive_split(Path(to_absolute_path(d)))  # a finished training-split search, or a clear error
    check_refine(cfg.search.refine)
    launcher = cfg.get("shard_launcher")
    if launcher is not None and launcher.name not in PLACEMENTS:
        raise ValueError(f"shard_launcher={launcher.name!r}: allowed: {', '.join(PLACEMENTS)}")
    if cfg.search.refine.model is not None and cfg.search.refine.budget > 0:  # fail now, not after sampling
        try:
            resolve_model(str(cfg.search.refine.model))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"search.refine.model={cfg.search.refine.model}: {e}") from e


def run_search(cfg: DictConfig, run_dir: Path, shard_job: Callable[[DictConfig, str, int], dict[str, Any]] = run_shard,
               ) -> dict[str, Any]:
    """Run the search job described by `cfg` in `run_dir`; returns the metrics also written to metrics.json.
    With `search.shards` > 1, `shard_job` searches each shard (soar.search.shards) and this job scores the whole."""
    check_config(cfg)
    data = cfg.data
    split = load_split(data.dataset, data.split, data.path)
    tasks = {t.id: t for t in select_tasks(split, data.tasks, data.limit, prompt_length)}
    n_shards = check_shards(cfg.search.get("shards", 1), len(tasks))
    if n_shards > 1 and cfg.model.engine == "pool":
        raise ValueError("search.shards applies to searches that run programs; model=pool runs none (use 1)")
    run = SearchRun(run_dir)
    run.start()  # unfinished for everyone (loop, report, pool, train) until run.finish() below
    archive = ProgramArchive(run.archive)
    with tracking(cfg, "search", run_dir) as tracker:
        if n_shards > 1:
            throughput = run_sharded(cfg, run_dir, {tid: prompt_length(t) for tid, t in tasks.items()}, shard_job)
        else:
            throughput = RUNNERS[cfg.model.engine](cfg, split, tasks, archive, tracker)
        present = set(archive.column_names())  # a replay's or an older archive has no token columns
        table = archive.read([c for c in SCORED_COLUMNS if c in present])  # not the raw answers: GBs at paper size
        if cfg.model.engine in ("replay", "pool"):  # the programs decide which tasks are evaluated
            tasks = {tid: tasks[tid] for tid in dict.fromkeys(table.column("task_id").to_pylist())}
        if cfg.model.engine == "replay":
            (results,) = scored_kinds(table, tasks, cfg.scoring, [None])
            metrics = {**summarize(results), **throughput}
        else:  # and the paper's sample-only vs sample+refine comparison
            results, samples = scored_kinds(table, tasks, cfg.scoring, [None, "sample"])
            metrics = {**summarize(results), **throughput, "sample_only": summarize(samples)}
        rate = float(OmegaConf.select(cfg, "cost.gpu_hour_usd", default=DEFAULT_GPU_HOUR_USD))
        spent = table.select([c for c in COST_COLUMNS if c in table.column_names])
        costs = task_costs(spent.filter(pc.is_in(spent.column("task_id"), pa.array(list(tasks)))),
                           float(throughput.get("gpu_s") or 0.0), rate)
        metrics["cost"] = cost_summary(costs, rate, sum(r.vote_pass2 or 0 for r in results))
        write_json(run.metrics_file, metrics)
        write_json(run.tasks_file, {r.task_id: {**{k: v for k, v in vars(r).items() if k != "attempts"},
                                                "cost": costs.get(r.task_id)} for r in results})
        tracker.summary(flatten(metrics, "search"))
        tracker.table("search/tasks", *per_task_rows(results, costs))
        tracker.artifact("programs", "archive", run.archive)
    run.finish()  # last: after the tracker has closed its run
    console = Console()
    console.print(summary_table(results, metrics))
    console.print(run_summary(metrics, results))
    try:
        from soar.report import build_report

        print(f"report: {build_report([run_dir], run_dir / 'report')}", flush=True)  # unwrapped: a path to open
    except Exception as e:  # the run's results are saved: a failed picture must not fail the run
        log.warning("the HTML report failed (%s: %s); retry with: python -m soar.report %s", type(e).__name__, e,
                    run_dir)
    return metrics

