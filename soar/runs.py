"""Run directories: what a search run and a train run hold, which split a search searched, the searches of a loop
dir, and the one answer to "is this run finished?" that the loop, the report, pool and train all ask.

    run = SearchRun(run_dir); run.start(); ...write its outputs...; run.finish()   # the job
    SearchRun(run_dir).finished                                                      # everyone else

Decisions:
- One marker, `run.json` ({"kind": "search"|"train", "state": "running"|"finished"}), owned by this module. A job
  writes it with state "running" before its first output and rewrites it, atomically (temp file + rename), with
  state "finished" after its last one; `finish` refuses while an output is missing. A run dir with a marker is
  finished exactly when the marker says so and names the right kind, whatever other files it holds: a search killed
  after metrics.json and before tasks.json (or during its W&B upload) is unfinished for everyone, and the loop
  runs it again (it resumes from its archive).
- Run dirs written before the marker existed (no run.json) are judged by their outputs, in the order the jobs
  wrote them: a search is finished with programs.parquet, metrics.json and tasks.json (tasks.json came last); a
  train run with metrics.json, adapter/adapter_config.json and merged/config.json. Every job of this version
  writes the marker first, so the rule only ever applies to such old dirs.
- Ground truth: a search may use its tasks' test outputs only on a training split (GROUND_TRUTH_SPLITS), and so
  may hindsight data built from its archive (soar.finetune.data resolves finetune.data.use_test per archive).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from soar.io import write_json

MARKER = "run.json"
GROUND_TRUTH_SPLITS = ("training",)  # splits whose test outputs may be used to choose programs or training data


@dataclass(frozen=True)
class RunDir:
    """A job's run dir: its outputs (relative paths) and its marker."""
    path: Path
    kind: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]  # every output a finished run has

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    def state(self) -> dict[str, Any] | None:
        """The marker's content; None for a run dir without one."""
        try:
            return json.loads(self.marker.read_text())
        except FileNotFoundError:
            return None

    @property
    def finished(self) -> bool:
        state = self.state()
        if state is None:  # written before run.json existed: judged by its outputs (module doc)
            return all((self.path / f).exists() for f in self.outputs)
        return state.get("kind") == self.kind and state.get("state") == "finished"

    def missing(self) -> list[str]:
        return [f for f in self.outputs if not (self.path / f).exists()]

    def start(self) -> None:
        """Mark the run as running: from now on only `finish` makes it finished."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._mark("running")

    def finish(self) -> None:
        """Mark the run as finished; call it after the last output is written."""
        if missing := self.missing():
            raise RuntimeError(f"{self.path}: cannot mark the {self.kind} run finished: {', '.join(missing)} missing")
        self._mark("finished")

    def metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_file.read_text())

    def _mark(self, state: str) -> None:
        write_json(self.marker, {"kind": self.kind, "state": state})


class SearchRun(RunDir):
    """search.py's run dir: programs.parquet (the archive), metrics.json, tasks.json, the composed config."""
    kind = "search"
    outputs = ("programs.parquet", "metrics.json", "tasks.json")

    @property
    def archive(self) -> Path:
        return self.path / "programs.parquet"

    @property
    def tasks_file(self) -> Path:
        return self.path / "tasks.json"

    def split(self) -> tuple[str, str, str | None] | None:
        """(dataset, split, path) the search was given; None for a run dir without a config of its own."""
        from soar.data import searched_split

        return searched_split(self.path)


class TrainRun(RunDir):
    """train.py's run dir: examples.jsonl, checkpoints/, adapter/, merged/ (the next model), metrics.json."""
    kind = "train"
    outputs = ("metrics.json", "adapter/adapter_config.json", "merged/config.json")

    @property
    def merged(self) -> Path:
        return self.path / "merged"

    @property
    def log_file(self) -> Path:
        return self.path / "train_log.jsonl"


def ground_truth_allowed(split: str | None) -> bool:
    """Whether the test outputs of a split's tasks may be used (a training split; never an evaluation split)."""
    return split in GROUND_TRUTH_SPLITS


def loop_iterations(path: Path) -> list[tuple[int, Path]]:
    """(i, iter<i> dir) of a loop dir, in order."""
    return sorted((int(d.name[4:]), d) for d in Path(path).glob("iter*") if d.name[4:].isdigit() and d.is_dir())


def finished_searches(path: Path) -> list[Path]:
    """`path` when it is a finished search run dir, else every finished main search (iter<i>/search) of a loop dir."""
    if SearchRun(path).finished:
        return [Path(path)]
    return [it / "search" for _, it in loop_iterations(path) if SearchRun(it / "search").finished]
