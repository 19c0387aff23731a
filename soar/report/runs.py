"""Run directories read back for the report: search runs, loops (iter<i>/{search,heldout,train_<mode>}), multirun
sweeps. What each dir holds, and whether a run is finished, is soar.runs' answer, the same as the loop's."""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soar.runs import SEARCH_STAGES, LoopRun, SearchRun, SweepRun, TrainRun, open_run


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
    stages: dict[str, Search]  # by SEARCH_STAGES name
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


def expand(path: Path) -> list[Path]:
    """`path` itself when it is a run dir, else the run dirs among its numbered Hydra job dirs (a multirun sweep)."""
    if not path.is_dir():
        raise NotARunError(f"{path}: no such directory")
    if open_run(path) is not None:
        return [path]
    jobs = SweepRun(path).jobs()
    runs = [j for j in jobs if open_run(j) is not None]
    for j in jobs:
        if j not in runs:
            print(f"[soar.report] {j}: job without results (failed or unfinished): skipped", file=sys.stderr)
    if not runs:
        raise NotARunError(
            f"{path}: not a soar run dir: expected a finished search run (soar.runs), iter<i>/ stages "
            "(a loop, python -m soar.loop) or numbered Hydra job dirs holding such runs (a multirun sweep)")
    return runs


def load_search(run: SearchRun) -> Search:
    return Search(run.path, run.metrics(), json.loads(run.tasks_file.read_text()))


def load_train(run: TrainRun) -> Train:
    log_file = run.log_file
    log = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()] if log_file.is_file() else []
    return Train(run.path, run.finished, run.metrics() if run.finished else {}, log)


def load_iteration(loop: LoopRun, i: int) -> Iteration:
    """Iteration i of a loop: its finished searches and its train stages (finished or not)."""
    searches = {name: loop.search(i, name) for name in SEARCH_STAGES}
    return Iteration(i, {name: load_search(s) for name, s in searches.items() if s.finished},
                     [load_train(t) for t in loop.trains(i).values()])


def load_loop(loop: LoopRun) -> Run:
    """A loop dir with every iteration it holds; `missing` names its stage dirs that are not finished."""
    unfinished = [str(s.path.relative_to(loop.path)) for i in loop.iterations() for s in loop.stages(i)
                  if not s.finished]
    return Run(loop.path, "loop", loop.overrides(), [load_iteration(loop, i) for i in loop.iterations()], unfinished)


def load_run(path: Path) -> Run:
    run = open_run(path)
    if isinstance(run, SearchRun):
        return Run(path, "search", run.overrides(), [Iteration(None, {"search": load_search(run)})], [])
    if run is None:
        raise NotARunError(f"{path}: not a finished search run nor a loop dir (soar.runs)")
    return load_loop(run)


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
