"""A loop's own summary, which python -m soar.loop writes when its last stage is done, read from the loop dir the way
the report reads it (soar.report.runs) and drawn by the report's figure: one place computes the per-iteration rows
and draws the learning figure.

- summary.json: per search set (search, heldout), one row per iteration whose search finished, with the headline
  metrics and diversity (SUMMARY_METRICS); printed as a table too.
- learning.png: the report's iteration curves (iterations.png) of this one loop.
- iteration_row: the row the loop logs to W&B after each iteration, under the names every run uses
  (search/vote_pass2, search/sample_only/vote_pass2, train/<mode>/loss, and train/loss when one model is trained).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from soar.io import write_json
from soar.report.plots import CURVE_METRICS, iteration_curves
from soar.report.runs import Iteration, Run, label_runs, load_loop
from soar.runs import SEARCH_STAGES, TRAIN_PREFIX, LoopRun

SUMMARY_METRICS = (*CURVE_METRICS, "distinct_codes", "distinct_outputs")  # the last two: means per task


def iteration_row(it: Iteration) -> dict[str, Any]:
    """One iteration's headline metrics: its finished searches and its finished train runs."""
    out: dict[str, Any] = {}
    for name, search in it.stages.items():
        m = search.metrics
        out.update({f"{name}/{k}": m.get(k) for k in SUMMARY_METRICS})
        out.update({f"{name}/sample_only/{k}": v for k, v in m.get("sample_only", {}).items() if k in SUMMARY_METRICS})
    trains = [t for t in it.train if t.finished]
    for t in trains:
        m, mode = t.metrics, t.path.name.removeprefix(TRAIN_PREFIX)
        values = {"loss": m.get("train_loss"), "n_examples": m.get("n_train"), "tokens_per_s": m.get("tokens_per_s")}
        out.update({f"train/{mode}/{k}": v for k, v in values.items()})
        if len(trains) == 1:
            out.update({f"train/{k}": v for k, v in values.items()})
    return out


def loop_summary(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Per search set, {"iteration": i, metric: value} for every iteration that finished that search."""
    rows = {name: [{"iteration": it.index, **{k: it.stages[name].metrics.get(k) for k in SUMMARY_METRICS}}
                   for it in run.iterations if name in it.stages] for name in SEARCH_STAGES}
    return {name: r for name, r in rows.items() if r}


def _fmt(x: Any) -> str:
    return "-" if x is None else str(x) if isinstance(x, int) else f"{x:.3f}"


def summarize_loop(loop_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """summary.json, its printed table and learning.png of a loop dir; returns the summary."""
    loop = LoopRun(loop_dir)
    run = load_loop(loop)
    summary = loop_summary(run)
    write_json(loop.summary_file, summary)
    columns = ("iteration", *SUMMARY_METRICS)
    for name, rows in summary.items():
        print(f"\n{name}: " + " | ".join(f"{k:>14}" for k in columns))
        for r in rows:
            print(" " * (len(name) + 2) + " | ".join(f"{_fmt(r[k]):>14}" for k in columns))
    label_runs([run])
    iteration_curves([run], loop.learning_file)  # draws nothing without a finished search
    return summary
