"""Run directories read back for the report: search runs, loops (iter<i>/{search,heldout,train*}), multirun sweeps.
Whether a run is finished is soar.runs' answer, the same as the loop's."""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from soar.runs import SearchRun, TrainRun, loop_iterations

SETS = ("search", "heldout")  # a loop iteration's search stages: its own tasks and the held-out tasks


class NotARunError(ValueError):
    """A path given to the report that is not a soar run dir; the message names it."""


@dataclass
class Search:
    """One search run dir: metrics.json, tasks.json, programs.parquet and .hydra/config.yaml."""
    path: Path
    metrics: dict[str, Any]
    tasks: dict[str, dict[str, Any]]


@dataclass
class Train:
    """One train run dir; `metrics` is empty while the run is unfinished."""
    path: Path
    finished: bool
    metrics: dict[str, Any]
    log: list[dict[str, Any]]  # train_log.jsonl: one row per optimizer step


@dataclass
class Iteration:
    index: int | None  # None for a plain search run
    stages: dict[str, Search]  # by SETS name
    train: list[Train] = field(default_factory=list)


@dataclass
class Run:
    path: Path
    kind: str  # "search" or "loop"
    overrides: list[str]
    iterations: list[Iteration]
    missing: list[str]  # stage dirs that exist without results (unfinished or failed)
    label: str = ""

    def stages(self) -> list[tuple[int | None, str, Search]]:
        """(iteration, set name, search) for every finished search stage, in order."""
        return [(it.index, name, s) for it in self.iterations for name, s in it.stages.items()]


def is_search_dir(path: Path) -> bool:
    return SearchRun(path).finished


def is_loop_dir(path: Path) -> bool:
    return (path / "summary.json").is_file() or bool(loop_iterations(path))


def is_run_dir(path: Path) -> bool:
    return is_search_dir(path) or is_loop_dir(path)


def expand(path: Path) -> list[Path]:
    """`path` itself when it is a run dir, else the run dirs among its numbered Hydra job dirs (a multirun sweep)."""
    if not path.is_dir():
        raise NotARunError(f"{path}: no such directory")
    if is_run_dir(path):
        return [path]
    jobs = sorted((d for d in path.iterdir() if d.name.isdigit() and (d / ".hydra").is_dir()),
                  key=lambda d: int(d.name))
    runs = [j for j in jobs if is_run_dir(j)]
    for j in jobs:
        if j not in runs:
            print(f"[soar.report] {j}: job without results (failed or unfinished): skipped", file=sys.stderr)
    if not runs:
        raise NotARunError(
            f"{path}: not a soar run dir: expected a finished search run (soar.runs), iter<i>/ stages "
            "(a loop, python -m soar.loop) or numbered Hydra job dirs holding such runs (a multirun sweep)")
    return runs


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_search(path: Path) -> Search:
    run = SearchRun(path)
    return Search(path, run.metrics(), _json(run.tasks_file))


def load_train(path: Path) -> Train:
    run = TrainRun(path)
    log_file = run.log_file
    log = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()] if log_file.is_file() else []
    return Train(path, run.finished, run.metrics() if run.finished else {}, log)


def overrides(path: Path) -> list[str]:
    """The run's command-line overrides from .hydra/overrides.yaml, without Hydra's own (hydra.*, hydra/...)."""
    file = path / ".hydra" / "overrides.yaml"
    items = (yaml.safe_load(file.read_text()) or []) if file.is_file() else []
    return [o for o in map(str, items) if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]


def load_run(path: Path) -> Run:
    if is_search_dir(path):
        return Run(path, "search", overrides(path), [Iteration(None, {"search": load_search(path)})], [])
    iterations, missing = [], []
    for i, it_dir in loop_iterations(path):
        stages = {}
        for name in SETS:
            if is_search_dir(it_dir / name):
                stages[name] = load_search(it_dir / name)
            elif (it_dir / name).exists():
                missing.append(f"{it_dir.name}/{name}")
        train = [load_train(d) for d in sorted(it_dir.glob("train*")) if d.is_dir()]
        missing += [f"{it_dir.name}/{t.path.name}" for t in train if not t.finished]
        iterations.append(Iteration(i, stages, train))
    return Run(path, "loop", overrides(path), iterations, missing)


def label_runs(runs: list[Run]) -> None:
    """Label each run by the overrides that set it apart from the others (all of them for a single run),
    or by its dir name when it has none; duplicates get their parent dir name."""
    common = set.intersection(*(set(r.overrides) for r in runs)) if len(runs) > 1 else set()
    for r in runs:
        r.label = " ".join(o for o in r.overrides if o not in common) or r.path.name
    counts = Counter(r.label for r in runs)
    for i, r in enumerate(runs):
        if counts[r.label] > 1:
            r.label = f"{r.label} ({r.path.parent.name}/{r.path.name} #{i})"


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run of `paths` (sweep dirs expanded to their jobs), labelled; NotARunError names a bad path."""
    runs = [load_run(p) for path in paths for p in expand(Path(path))]
    label_runs(runs)
    return runs
