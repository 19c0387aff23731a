"""Per-task results and run metrics computed from the archive, and the summary table printed at the end.

The vote (and so vote pass@2, the gap and every per-task table) counts only the programs that pass SOAR's filters
(spec §7.2, soar.scoring.metrics); the "voters" column says how many did.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig
from rich.table import Table
from tqdm import tqdm

from soar.archive import TaskRows
from soar.data import Task
from soar.scoring import TaskResult, score_task
from soar.scoring.metrics import judge
from soar.scoring.programs import Programs

ROW_COLUMNS = ["task_id", "code", "predicted_train_output", "predicted_test_output", "error"]


def task_results(table: pa.Table, tasks: dict[str, Task], scoring: DictConfig) -> list[TaskResult]:
    """Score every task of `tasks` on its programs in `table` (an archive); a task without programs scores 0."""
    return scored_kinds(table, tasks, scoring, [None])[0]


def scored_kinds(table: pa.Table, tasks: dict[str, Task], scoring: DictConfig, kinds: Sequence[str | None]
                 ) -> list[list[TaskResult]]:
    """task_results for each of `kinds`: None = every program, a kind (e.g. "sample") = that kind's programs only.
    One pass: one task's rows are unpacked at a time (a paper-size archive holds millions), in archive order."""
    by_task = TaskRows(table.select([*ROW_COLUMNS, *(["kind"] if any(kinds) else [])]), tasks)
    results: list[list[TaskResult]] = [[] for _ in kinds]
    for tid, task in tasks.items():
        judged = judge(task, by_task.programs(tid) if tid in by_task.spans else Programs([], [], []))
        row_kinds = by_task.column(tid, "kind") if any(kinds) and tid in by_task.spans else []
        for out, kind in zip(results, kinds):
            chosen = judged if kind is None else judged.subset([k == kind for k in row_kinds])
            out.append(score_task(task, chosen, attempts=scoring.attempts, method=scoring.vote, c=scoring.c))
    return results


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _mark(x: bool | float | None) -> str:
    return "-" if x is None else ("yes" if x is True or x == 1 else "no" if x is False or x == 0 else f"{x:.2f}")


def summary_table(results: Sequence[TaskResult], metrics: dict[str, Any], max_rows: int = 40) -> Table:
    table = Table(title=f"{metrics['n_tasks']} tasks, {metrics['n_programs']} programs")
    cols = ("task", "programs", "valid", "voters", "mean train acc", "train oracle", "test oracle", "vote pass@2")
    for col in cols:
        table.add_column(col, justify="left" if col == "task" else "right")
    for r in list(results)[:max_rows]:
        table.add_row(r.task_id, str(r.n_programs), _pct(r.valid_rate), str(r.n_voters), _pct(r.mean_train_acc),
                      _mark(r.train_oracle), _mark(r.test_oracle), _mark(r.vote_pass2))
    if len(results) > max_rows:
        table.add_row(f"... {len(results) - max_rows} more", *[""] * (len(cols) - 1))
    table.add_section()
    table.add_row("all", str(metrics["n_programs"]), _pct(metrics["valid_rate"]), str(metrics["n_voters"]),
                  _pct(metrics["mean_train_acc"]), _pct(metrics["train_oracle"]), _pct(metrics["test_oracle"]),
                  _pct(metrics["vote_pass2"]), style="bold")
    return table


def run_summary(metrics: dict[str, Any], results: Sequence[TaskResult]) -> str:
    """The run on one screen: tasks solved, programs, valid rate, time and generation speed, on what hardware."""
    n = metrics["n_tasks"]
    count = lambda key: sum(1 for r in results if getattr(r, key) == 1)  # noqa: E731
    solved = f"[bold]{count('vote_pass2')}/{n} tasks solved[/bold] (vote pass@2)"
    lines = [f"{solved} · test oracle {count('test_oracle')}/{n}"
             f" · train oracle {count('train_oracle')}/{n}",
             f"{metrics['n_programs']} programs · {_pct(metrics['valid_rate'])} valid"
             f" · {metrics['n_voters']} pass the filters and vote",
             f"diversity per task: {metrics['distinct_codes'] or 0:.1f} distinct codes"
             f" · {metrics['distinct_outputs'] or 0:.1f} distinct outputs"
             f" · most frequent code {_pct(metrics['top_code_share'])} of a task's programs"]
    if "wall_s" in metrics:  # an LLM search
        wall, sample = metrics["wall_s"], metrics["sample_s"]
        speed = f"{metrics['tokens_per_s']:.0f} tok/s" if metrics.get("tokens_per_s") else "-"
        lines[1] += f" · {metrics['tokens_generated'] / max(metrics['n_programs_generated'], 1):.0f} tokens/program"
        clock = tqdm.format_interval
        lines += [f"{clock(wall)} searching (sample {clock(sample)}, refine {clock(wall - sample)}) · {speed}",
                  f"{metrics['dtype']} on {metrics['hardware']}"]
    return "\n".join(lines)


def per_task_rows(results: Sequence[TaskResult], costs: Mapping[str, Mapping[str, float]]
                  ) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the per-task table logged to the tracker: results, then cost (soar.search.cost)."""
    cols = ["task_id", "n_programs", "valid_rate", "n_voters", "mean_train_acc", "train_oracle", "test_oracle",
            "vote_pass2", "n_distinct_codes", "n_distinct_outputs", "top_code_share"]
    cost_cols = ["gen_tokens", "gpu_s", "exec_cpu_s", "usd"]
    none = dict.fromkeys(cost_cols, 0)
    return cols + cost_cols, [[getattr(r, c) for c in cols] + [costs.get(r.task_id, none)[c] for c in cost_cols]
                              for r in results]

