"""Run directories: what a search run, a train run, a loop dir and a sweep dir hold, which split a search searched,
and the one answer to "is this run finished?" that the loop, the report, pool and train all ask. Nothing else in
soar builds a path inside a run dir it did not write itself.

    run = SearchRun(run_dir); run.start(); ...write its outputs...; run.finish()   # the job
    SearchRun(run_dir).finished                                                      # everyone else
    loop = LoopRun(loop_dir); loop.search(i); loop.train(i, "both"); loop.iterations()
    SweepRun(sweep_dir).jobs()                                                       # a Hydra multirun's job dirs

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
- A loop dir (python -m soar.loop) holds iter<i>/ (i = 0, 1, ...; other names are not iterations) with the stages
  search and heldout (search runs) and train_<mode> (train runs, one per finetune data mode), and summary.json and
  learning.png (soar.report.loop writes both). A loop dir has no marker of its own: it is a loop once it has an
  iteration or a summary, and its stages are finished one by one.
- A sweep dir (any `-m` run) holds multirun.yaml and one numbered job dir per job (Hydra's hydra.sweep.subdir,
  each with its .hydra/); what a job is (a search run, a loop) is the job dir's own answer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml
from omegaconf import DictConfig, OmegaConf

from soar.io import write_json

MARKER = "run.json"
GROUND_TRUTH_SPLITS = ("training",)  # splits whose test outputs may be used to choose programs or training data
SEARCH_STAGES = ("search", "heldout")  # a loop iteration's searches: its own tasks, the held-out tasks
TRAIN_PREFIX = "train_"  # a loop iteration's train stages: train_<finetune data mode>


@dataclass(frozen=True)
class JobDir:
    """A dir a Hydra job ran in: .hydra/config.yaml (its composed config) and .hydra/overrides.yaml (its command
    line)."""
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def hydra_dir(self) -> Path:
        return self.path / ".hydra"

    def overrides(self) -> list[str]:
        """The job's command-line overrides, without Hydra's own (hydra.*, hydra/...); [] without .hydra/."""
        file = self.hydra_dir / "overrides.yaml"
        items = (yaml.safe_load(file.read_text()) or []) if file.is_file() else []
        return [o for o in map(str, items) if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]

    def config(self) -> DictConfig | None:
        """The job's composed config: Hydra's copy, else the stage.yaml soar.loop wrote; None without either."""
        for file in (self.hydra_dir / "config.yaml", self.path / "stage.yaml"):
            if file.is_file():
                cfg = OmegaConf.load(file)
                assert isinstance(cfg, DictConfig)
                return cfg
        return None


@dataclass(frozen=True)
class RunDir(JobDir):
    """A job's run dir: its outputs (relative paths) and its marker."""
    kind: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]  # every output a finished run has

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
        cfg = self.config()
        data = None if cfg is None else OmegaConf.select(cfg, "data")
        return None if data is None else (data.dataset, data.split, data.path)


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


class LoopRun(JobDir):
    """python -m soar.loop's run dir: iter<i>/{search, heldout, train_<mode>}, summary.json, learning.png."""
    kind = "loop"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def learning_file(self) -> Path:
        return self.path / "learning.png"

    @property
    def is_loop(self) -> bool:
        """Whether the dir is a loop's: it has an iteration or a summary (a loop dir has no marker of its own)."""
        return self.summary_file.is_file() or bool(self.iterations())

    def iteration_dir(self, i: int) -> Path:
        return self.path / f"iter{i}"

    def iterations(self) -> list[int]:
        """The iterations the dir holds (iter<i>/ dirs), in order."""
        return sorted(int(d.name[4:]) for d in self.path.glob("iter*") if d.name[4:].isdigit() and d.is_dir())

    def search(self, i: int, name: str = "search") -> SearchRun:
        """Iteration i's search stage `name` (one of SEARCH_STAGES)."""
        if name not in SEARCH_STAGES:
            raise ValueError(f"{name!r} is not a search stage of a loop: allowed: {', '.join(SEARCH_STAGES)}")
        return SearchRun(self.iteration_dir(i) / name)

    def train(self, i: int, mode: str) -> TrainRun:
        """Iteration i's train stage for finetune data mode `mode` (its merged model searches iteration i + 1)."""
        return TrainRun(self.iteration_dir(i) / f"{TRAIN_PREFIX}{mode}")

    def trains(self, i: int) -> dict[str, TrainRun]:
        """Iteration i's train stages that exist, by mode."""
        dirs = sorted(self.iteration_dir(i).glob(f"{TRAIN_PREFIX}*"))
        return {d.name.removeprefix(TRAIN_PREFIX): TrainRun(d) for d in dirs if d.is_dir()}

    def stages(self, i: int) -> list[RunDir]:
        """Iteration i's stage dirs that exist, finished or not: its searches, then its train runs."""
        searches = [run for name in SEARCH_STAGES if (run := self.search(i, name)).path.exists()]
        return [*searches, *self.trains(i).values()]

    def finished_searches(self) -> list[SearchRun]:
        """Every finished main search (iter<i>/search), in order."""
        return [run for i in self.iterations() if (run := self.search(i)).finished]


@dataclass(frozen=True)
class SweepRun:
    """A Hydra multirun dir (search.py -m, python -m soar.loop -m): multirun.yaml and one numbered dir per job."""
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def jobs(self) -> list[Path]:
        """The job dirs (numbered, with .hydra/), by job number; whatever each holds, finished or not."""
        dirs = (d for d in self.path.iterdir() if d.name.isdigit() and JobDir(d).hydra_dir.is_dir())
        return sorted(dirs, key=lambda d: int(d.name))


def open_run(path: Path) -> SearchRun | LoopRun | None:
    """The run at `path`: a finished search run, a loop dir, or None (an unfinished search, a sweep dir, anything
    else)."""
    if (search := SearchRun(path)).finished:
        return search
    if (loop := LoopRun(path)).is_loop:
        return loop
    return None


def finished_searches(path: Path) -> list[Path]:
    """`path` when it is a finished search run dir, else every finished main search (iter<i>/search) of a loop dir."""
    if SearchRun(path).finished:
        return [Path(path)]
    return [run.path for run in LoopRun(path).finished_searches()]
