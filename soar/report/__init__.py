"""Offline report of soar runs: `python -m soar.report RUN_DIR [RUN_DIR ...] [--out DIR]` -> report.html + PNGs.

A RUN_DIR is a search run (search.py), a loop (python -m soar.loop) or a multirun sweep dir of either (expanded to
its jobs). Several runs are compared, each labelled by the Hydra overrides that set it apart.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from soar.report.html import esc, figure, fmt, page, table
from soar.report.plots import make_figures
from soar.report.runs import NotARunError, Run, load_runs
from soar.report.tasks import task_section
from soar.runs import SEARCH_STAGES

__all__ = ["NotARunError", "build_report"]

SUMMARY_COLUMNS = ("run", "iteration", "tasks", "n tasks", "programs", "valid", "mean train acc", "train oracle",
                   "test oracle", "vote pass@2", "vote gap", "vote pass@2 (sample only)", "distinct codes per task",
                   "distinct outputs per task", "top code share", "tokens generated", "GPU-h", "US$ per task")


def _it(index: int | None) -> str:
    return "-" if index is None else str(index)


def runs_table(runs: list[Run]) -> str:
    rows = [[esc(r.label), r.kind, f"<code>{esc(r.path)}</code>", esc(" ".join(r.overrides) or "-"),
             esc(", ".join(r.missing)) or "-"] for r in runs]
    return table(("label", "kind", "path", "overrides", "unfinished stages"), rows, cls="text")


def _tasks(m: dict[str, Any], key: str, test: bool = True) -> str:
    """A task-level fraction with its task count, e.g. 8.3% (1/12); test metrics count tasks with test outputs."""
    frac, n = m.get(key), m.get("n_tasks_with_test" if test else "n_tasks", m.get("n_tasks"))
    if frac is None or not n:
        return fmt(frac)
    k = frac * n
    return f"{fmt(frac)} ({k:.0f}/{n})" if abs(k - round(k)) < 1e-6 else f"{fmt(frac)} ({k:.1f}/{n})"


def _cost(cost: dict[str, Any] | None) -> list[str]:
    """Generated tokens, GPU-hours and dollars per task of a search (soar.search.cost); '-' before they existed."""
    if not cost:
        return ["-"] * 3
    return [fmt(cost["gen_tokens"]), fmt(cost["gpu_s"] / 3600, percent=False), fmt(cost["usd_per_task"], percent=False)]


def summary_table(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        for it, name, s in r.stages():
            m = s.metrics
            rows.append([esc(r.label), _it(it), name, fmt(m.get("n_tasks")), fmt(m.get("n_programs")),
                         fmt(m.get("valid_rate")), fmt(m.get("mean_train_acc")), _tasks(m, "train_oracle", test=False),
                         _tasks(m, "test_oracle"), _tasks(m, "vote_pass2"), fmt(m.get("vote_gap")),
                         _tasks(m.get("sample_only", {}), "vote_pass2"), fmt(m.get("distinct_codes"), percent=False),
                         fmt(m.get("distinct_outputs"), percent=False), fmt(m.get("top_code_share")),
                         *_cost(m.get("cost"))])
    return table(SUMMARY_COLUMNS, rows)


def train_table(runs: list[Run]) -> str:
    rows = [[esc(r.label), _it(it.index), esc(t.path.name), fmt(t.metrics.get("n_train")), fmt(t.metrics.get("steps")),
             fmt(t.metrics.get("train_loss"), percent=False),
             fmt(t.metrics.get("train_loss_first_step"), percent=False),
             fmt(t.metrics.get("train_loss_last_step"), percent=False),
             fmt(t.metrics.get("seconds"), percent=False)]
            for r in runs for it in r.iterations for t in it.train]
    if not rows:
        return ""
    return "<h2>Training</h2>" + table(
        ("run", "iteration", "dir", "examples", "steps", "mean loss", "first step", "last step", "seconds"), rows)


def tasks_sections(runs: list[Run], out: Path, max_tasks: int) -> str:
    """Per run: the last iteration's search tasks and held-out tasks."""
    parts = []
    for i, r in enumerate(runs):
        for name in SEARCH_STAGES:
            last = [(it.index, it.stages[name]) for it in r.iterations if name in it.stages][-1:]
            for it, search in last:
                where = "" if it is None else f", iteration {it}"
                parts.append(f"<h3>{esc(r.label)}: {name} tasks{where}</h3>"
                             f'<p class="muted"><code>{esc(search.path)}</code></p>')
                parts.append(task_section(search, out, f"run{i}_{'' if it is None else f'iter{it}_'}{name}", max_tasks))
    return "<h2>Tasks</h2>" + "".join(parts)


def build_report(run_dirs: Sequence[Path], out: Path, max_tasks: int = 6) -> Path:
    """Write out/report.html and its PNGs for the runs in `run_dirs`; returns the HTML path."""
    runs = load_runs([Path(p) for p in run_dirs])
    out.mkdir(parents=True, exist_ok=True)
    figures = "".join(figure(name, caption) for name, caption in make_figures(runs, out))
    body = (f'<p class="muted">generated {datetime.now():%Y-%m-%d %H:%M} by <code>python -m soar.report</code></p>'
            f"<h2>Runs</h2>{runs_table(runs)}"
            f"<h2>Summary</h2>{summary_table(runs)}{train_table(runs)}"
            f"<h2>Figures</h2>{figures or '<p>no figure: the runs lack the data</p>'}"
            + tasks_sections(runs, out, max_tasks))
    path = out / "report.html"
    path.write_text(page(f"soar report: {', '.join(r.label for r in runs)}"[:200], body))
    return path
