"""A loop run with several seeds, summed up: per seed, iteration and task set (search = the tasks it trains on,
heldout = the tasks it never trains on) the tasks solved and the search's health, then mean, min and max over seeds.

    python -m soar.report.seeds SWEEP_DIR [LOOP_DIR ...] --out docs/learning_cpu

- summary.json: {"runs": [{seed, dir, rows: [...]}], "aggregate": {set: [{iteration, n_seeds, metric: {mean, min,
  max}}]}, "gain": {set: per seed, tasks solved (train oracle) in the last iteration minus iteration 0}};
- solved.jsonl: one line per task solved (a program right on every train and test pair) in a seed, iteration and
  set: task_id, code (the shortest such program), seed, iteration, split; replay it with
  `search.py model=replay model.programs=solved.jsonl data=arc_agi_1 data.split=<split>`;
- seeds.png: each metric against iteration, the mean over seeds with its min-max band.
Counts are tasks (vote: the sum of the tasks' pass@2 scores, a fraction for a task with several test inputs);
the rates and diversity are the search's metrics.json values.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from soar.archive import read_programs, solved
from soar.io import write_json, write_text
from soar.report.plots import seed_bands
from soar.report.runs import NotARunError, expand
from soar.runs import SEARCH_STAGES, LoopRun

COUNTS = ("vote", "train_oracle", "test_oracle")  # tasks solved, from tasks.json
RATES = ("valid_rate", "mean_train_acc", "distinct_codes", "distinct_outputs", "top_code_share")  # metrics.json
METRICS = (*COUNTS, *RATES)


def search_row(metrics: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One search's numbers: tasks solved (vote, train oracle, test oracle) and its rates."""
    return {"n_tasks": len(tasks),
            "vote": sum(t.get("vote_pass2") or 0.0 for t in tasks.values()),
            "train_oracle": sum(bool(t["train_oracle"]) for t in tasks.values()),
            "test_oracle": sum(bool(t.get("test_oracle")) for t in tasks.values()),
            **{k: metrics.get(k) for k in RATES}}


def solved_programs(archive: Path) -> dict[str, str]:
    """task_id -> the shortest archived program right on every train and test pair of its task."""
    table = read_programs(archive, ["train_acc", "correct_test_input"])
    table = table.filter(pc.equal(table.column("train_acc"), 1.0))
    best: dict[str, str] = {}
    for row in table.to_pylist():
        code = row["code"] or ""
        if solved(row) and (row["task_id"] not in best or len(code) < len(best[row["task_id"]])):
            best[row["task_id"]] = code
    return best


def seed_of(loop: LoopRun) -> int:
    cfg = loop.config()
    if cfg is None or "seed" not in cfg:
        raise NotARunError(f"{loop.path}: no .hydra/config.yaml with a seed: not a soar.loop dir")
    return int(cfg.seed)


def read_loop(loop: LoopRun, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, solved lines) of one loop run with `seed`: a row per finished search of each iteration and set."""
    rows: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for i in loop.iterations():
        for name in SEARCH_STAGES:
            run = loop.search(i, name)
            if not run.finished:
                continue
            rows.append({"iteration": i, "set": name,
                         **search_row(run.metrics(), json.loads(run.tasks_file.read_text()))})
            split = run.split()
            lines += [{"task_id": t, "code": code, "seed": seed, "iteration": i,
                       "split": split[1] if split else None}
                      for t, code in sorted(solved_programs(run.archive).items())]
    return rows, lines


def aggregate(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per set and iteration, mean/min/max over the seeds that finished that search."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SEARCH_STAGES:
        iterations = sorted({r["iteration"] for run in runs for r in run["rows"] if r["set"] == name})
        for i in iterations:
            rows = [r for run in runs for r in run["rows"] if r["set"] == name and r["iteration"] == i]
            entry: dict[str, Any] = {"iteration": i, "n_seeds": len(rows)}
            for k in METRICS:
                values = [r[k] for r in rows if r[k] is not None]
                entry[k] = ({"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
                            if values else None)
            out.setdefault(name, []).append(entry)
    return out


def gains(runs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per set, per seed: tasks solved (train oracle) in its last finished iteration minus in iteration 0."""
    out: dict[str, dict[str, int]] = {}
    for run in runs:
        for name in SEARCH_STAGES:
            by_it = {r["iteration"]: r["train_oracle"] for r in run["rows"] if r["set"] == name}
            if 0 in by_it and len(by_it) > 1:
                out.setdefault(name, {})[str(run["seed"])] = by_it[max(by_it)] - by_it[0]
    return out


def _cell(key: str, v: dict[str, float] | None) -> str:
    """mean [min, max]: tasks with two decimals when fractional, rates as percentages."""
    if v is None:
        return "-"
    def fmt(x: float) -> str:
        if key in COUNTS:
            return f"{x:.0f}" if all(y == int(y) for y in v.values()) else f"{x:.2f}"
        return f"{x:.1f}" if key.startswith("distinct") else f"{x:.1%}"
    return fmt(v["mean"]) if v["min"] == v["max"] else f"{fmt(v['mean'])} [{fmt(v['min'])}, {fmt(v['max'])}]"


def markdown(agg: dict[str, list[dict[str, Any]]], n_tasks: dict[str, int]) -> str:
    """The aggregate as a markdown table: mean [min, max] over seeds."""
    head = ["set", "iteration", "seeds", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entries in agg.items():
        for e in entries:
            lines.append("| " + " | ".join([f"{name} ({n_tasks[name]} tasks)", str(e["iteration"]),
                                            str(e["n_seeds"]), *(_cell(k, e[k]) for k in METRICS)]) + " |")
    return "\n".join(lines)


def summarize_seeds(paths: list[Path], out: Path) -> dict[str, Any]:
    """summary.json, solved.jsonl and seeds.png in `out` for the loops of `paths` (loop dirs or sweeps of them)."""
    loops = [LoopRun(p) for path in paths for p in expand(path)]
    not_loops = [str(loop.path) for loop in loops if not loop.is_loop]
    if not_loops:
        raise NotARunError(f"not loop dirs (python -m soar.loop): {', '.join(not_loops)}")
    runs: list[dict[str, Any]] = []
    solved_lines: list[dict[str, Any]] = []
    for loop in loops:
        seed = seed_of(loop)
        rows, lines = read_loop(loop, seed)
        runs.append({"seed": seed, "dir": str(loop.path), "rows": rows})
        solved_lines += lines
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two loops with the same seed among {[r['dir'] for r in runs]}: seeds {seeds}")
    runs.sort(key=lambda r: r["seed"])
    agg = aggregate(runs)
    n_tasks = {name: max(r["n_tasks"] for run in runs for r in run["rows"] if r["set"] == name) for name in agg}
    summary: dict[str, Any] = {"runs": runs, "n_tasks": n_tasks, "aggregate": agg, "gain": gains(runs)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    solved_lines.sort(key=lambda r: (r["split"] or "", r["seed"], r["iteration"], r["task_id"]))
    write_text(out / "solved.jsonl", "".join(json.dumps(r) + "\n" for r in solved_lines))
    seed_bands(agg, n_tasks, METRICS, COUNTS, out / "seeds.png")
    print(markdown(agg, n_tasks))
    print(f"gain in tasks solved (train oracle), last iteration - iteration 0, per seed: {summary['gain']}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m soar.report.seeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="a loop dir or a sweep dir of loops")
    parser.add_argument("--out", type=Path, required=True, help="where summary.json, solved.jsonl, seeds.png go")
    args = parser.parse_args(argv)
    try:
        summarize_seeds(args.paths, args.out)
    except (NotARunError, ValueError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"[soar.report.seeds] wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
