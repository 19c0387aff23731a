"""Per-task section of one search stage: a table of every task, then rendered grids for some solved and unsolved.

The vote counts only the programs that pass SOAR's filters (spec §7.2). The table's "voters" column says how many
did ("-" for runs made before soar filtered); a card says when its best program (by train accuracy) is filtered out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from soar.report.grids import render_task
from soar.report.html import esc, fmt, image, table
from soar.report.programs import Best, best_programs, program_outputs, run_tasks
from soar.report.runs import Search
from soar.scoring import keep_programs

TASK_COLUMNS = ("task", "programs", "valid", "voters", "mean train acc", "best train acc", "train oracle",
                "test oracle", "vote pass@2", "distinct codes", "top code share")


def solved(result: dict[str, Any]) -> bool:
    """The vote's answer is fully right; train-perfect when the test outputs are unknown."""
    vote = result.get("vote_pass2")
    return bool(result.get("train_oracle")) if vote is None else vote == 1.0


def pick(results: dict[str, dict[str, Any]], best: dict[str, Best], n: int) -> tuple[list[str], list[str]]:
    """Up to n solved task ids (in run order) and n unsolved ones, near misses first (oracle hit, best train acc)."""
    won = [tid for tid, r in results.items() if solved(r)]
    lost = sorted((tid for tid, r in results.items() if not solved(r)),
                  key=lambda t: (not results[t].get("test_oracle"), -(best[t].train_acc if t in best else -1)))
    return won[:n], lost[:n]


def task_table(search: Search, best: dict[str, Best]) -> str:
    rows = [[esc(tid), fmt(r["n_programs"]), fmt(r["valid_rate"]), fmt(r.get("n_voters")), fmt(r["mean_train_acc"]),
             fmt(best[tid].train_acc if tid in best else None), fmt(r["train_oracle"]), fmt(r["test_oracle"]),
             fmt(r["vote_pass2"]), fmt(r.get("n_distinct_codes")), fmt(r.get("top_code_share"))]
            for tid, r in search.tasks.items()]
    return table(TASK_COLUMNS, rows)


def _card(tid: str, img: str | None, b: Best | None, n_test: int, rejected: str | None) -> str:
    stats = "no program" if b is None else (
        f"best program: train acc {fmt(b.train_acc)}, test "
        + ("unknown" if b.n_test_correct is None else f"{b.n_test_correct}/{n_test} right")
        + ("" if rejected is None else f"; filtered out ({rejected}), so it does not vote"))
    code = "" if b is None else f"<pre>{esc(b.code)}</pre>"
    pic = "" if img is None else image(img, f"task {tid}", 480)
    return f'<div class="card"><b>{esc(tid)}</b> <span class="muted">{esc(stats)}</span><br>{pic}{code}</div>'


def task_section(search: Search, out: Path, prefix: str, max_tasks: int) -> str:
    """HTML for one search stage; grid images go to out/grids/<prefix>_<task>.png."""
    best = best_programs(search.path)
    parts = [task_table(search, best)]
    won, lost = pick(search.tasks, best, max_tasks)
    if not won + lost:
        return parts[0]
    try:
        tasks = run_tasks(search.path)
    except (OSError, ValueError, AttributeError) as e:  # no .hydra config, or its data cannot be loaded here
        return parts[0] + f'<p class="note">grids unavailable: cannot load the run\'s tasks: {esc(e)}</p>'
    outputs = program_outputs(search.path, [best[t].program_id for t in won + lost if t in best])
    (out / "grids").mkdir(exist_ok=True)
    n_won = sum(map(solved, search.tasks.values()))
    for title, ids, total in (("solved", won, n_won), ("unsolved", lost, len(search.tasks) - n_won)):
        cards = []
        for tid in ids:
            b = best.get(tid)
            img, rejected = None, None
            if tid in tasks:
                img = f"grids/{prefix}_{tid}.png"
                outs = outputs.get(b.program_id) if b else None
                render_task(tasks[tid], outs, out / img)
                if b and outs is not None:
                    (rejected,) = keep_programs(tasks[tid], [(b.code, outs)])
            cards.append(_card(tid, img, b, len(tasks[tid].test) if tid in tasks else 0, rejected))
        parts.append(f"<h4>{title}: {len(ids)} of {total} shown</h4><div class=\"cards\">{''.join(cards)}</div>")
    return "".join(parts)
