"""A sharded search (`search.shards=N`): the tasks split into N disjoint shards, each searched by its own process or
SLURM job with its own engine, all writing into the one run dir.

Plan: tasks go to shards longest prompt first, each to the shard with the least prompt length so far (ties: the
lower shard), so shards get similar work. The plan is written once (`<run dir>/shards/plan.json`); a resumed run
must ask for the same shards and tasks. Shard k searches exactly as an unsharded search of its tasks would (REX
draws and program ids depend on the task, not on its neighbours) and writes its own parts of the one archive
(`part-s<k>-*.parquet`, `soar.archive`), so shards never write the same file; an exclusive lock per shard
(`shards/shard-<k>.lock`) refuses a second copy of a shard (a requeue race) before it writes anything. A shard
that ends writes `shards/shard-<k>.json` with its throughput figures; a finished shard is never run again, a
failed or killed one resumes from its own parts. When every shard has finished, the search job scores the whole
archive exactly as it scores an unsharded one (metrics.json, tasks.json, W&B, report).

What a shard sees: its own tasks. On the training split, the few-shot pool grows with the solutions the search
finds (soar.search.fewshot); a shard adds only its own, so a task's few-shot example can differ from an unsharded
run's. The shipped examples and `search.fewshot_archives` are the same for every shard.

Placement (`shard_launcher`, conf/shard_launcher/): `local` runs the shards as processes on this node through
submitit's LocalExecutor, each with its own group of GPUs (the visible GPUs split into groups of
`model.tensor_parallel_size`; `auto`: as many as divide evenly); `slurm` submits one SLURM job array with one task
per shard through submitit, with the slurm launcher's settings. Shards are submitit Checkpointables: a timed-out or
preempted shard is requeued and resumes.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import submitit
from omegaconf import DictConfig, OmegaConf

from soar.archive import ProgramArchive, archived_rows, committed_parts
from soar.data import load_split
from soar.io import write_json
from soar.runs import SearchRun
from soar.tracking import NullTracker

log = logging.getLogger(__name__)
PLACEMENTS = ("local", "slurm")
# figures of a shard's runner (soar.search.llm, soar.search.replay) that add up over shards running side by side
_SUMMED = {"n_prompts_skipped", "n_programs_generated", "tokens_generated", "tokens_per_s", "programs_per_s",
           "generation_s", "gpu_s", "execution_s", "programs", "tokens", "n_programs_in_file", "n_programs_executed",
           "n_programs_resumed", "exec_programs_per_s"}
_LONGEST = {"sample_s", "wall_s"}
_PER_PROGRAM = {"tokens_per_program", "s_per_program", "prompt_tokens_per_program", "prefix_cache_hit_rate"}
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def check_shards(value: Any, n_tasks: int) -> int:
    """`search.shards` as a count of shards, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"search.shards={value!r}: must be a positive integer")
    if value > n_tasks:
        raise ValueError(f"search.shards={value}: more shards than tasks ({n_tasks}); every shard needs a task")
    return value


def plan_shards(lengths: Mapping[str, int], n: int) -> list[list[str]]:
    """Task ids in `n` shards balanced by length: longest first, each to the least loaded shard (ties: the lower
    shard); each shard lists its tasks in the given order."""
    load = [0] * n
    owner: dict[str, int] = {}
    for tid in sorted(lengths, key=lambda t: (-lengths[t], t)):
        k = min(range(n), key=lambda i: (load[i], i))
        owner[tid], load[k] = k, load[k] + lengths[tid]
    return [[t for t in lengths if owner[t] == k] for k in range(n)]


def writer(index: int) -> str:
    return f"s{index:03d}"


class ShardDir:
    """`<run dir>/shards/`: the plan, one status file, lock and log folder per shard."""

    def __init__(self, run_dir: Path) -> None:
        self.run = SearchRun(run_dir)
        self.path = self.run.path / "shards"

    @property
    def plan_file(self) -> Path:
        return self.path / "plan.json"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def status_file(self, index: int) -> Path:
        return self.path / f"shard-{index:03d}.json"

    def finished(self, index: int) -> bool:
        file = self.status_file(index)
        return file.is_file() and json.loads(file.read_text()).get("state") == "finished"

    def figures(self, index: int) -> dict[str, Any]:
        return json.loads(self.status_file(index).read_text())["figures"]

    def plan(self) -> list[list[str]]:
        return json.loads(self.plan_file.read_text())["shards"]

    def fix_plan(self, plan: list[list[str]]) -> None:
        """Write the plan of a new run; for a resumed run, check that it asks for the same one."""
        if self.plan_file.is_file():
            old = self.plan()
            if old != plan:
                raise ValueError(f"{self.run.path}: this search was started with {len(old)} shard(s) over other "
                                 f"tasks ({self.plan_file}); resume it with the same search.shards and data")
            return
        unsharded = committed_parts(self.run.archive, writer="")  # the parts of the unnamed writer
        if unsharded:
            raise ValueError(f"{self.run.path}: this search was started unsharded ({len(unsharded)} archive parts); "
                             "resume it with search.shards=1")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.plan_file, {"shards": plan})

    @contextmanager
    def lock(self, index: int) -> Iterator[None]:
        """Hold shard `index` for this process; a second copy of the shard (a requeue race) is refused."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / f"shard-{index:03d}.lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"shard {index} of {self.run.path} is already running in another process; "
                                   "a shard runs once at a time") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def run_shard(cfg: DictConfig, run_dir: str, index: int) -> dict[str, Any]:
    """Search shard `index` of the run in `run_dir` (its plan written) into its own archive parts; returns and
    records its throughput figures. A finished shard returns its figures without running again."""
    from soar.search.run import RUNNERS

    shards = ShardDir(Path(run_dir))
    if shards.finished(index):
        return shards.figures(index)
    with shards.lock(index):
        data = cfg.data
        split = load_split(data.dataset, data.split, data.path)
        tasks = {tid: split[tid] for tid in shards.plan()[index]}
        archive = ProgramArchive(shards.run.archive, writer=writer(index))
        log.info("shard %d: %d tasks", index, len(tasks))
        figures = RUNNERS[cfg.model.engine](cfg, split, tasks, archive, NullTracker())
        write_json(shards.status_file(index), {"state": "finished", "tasks": len(tasks), "figures": figures})
    return figures


class ShardJob(submitit.helpers.Checkpointable):
    """A shard as a submitit job: requeued on timeout or preemption with the same arguments (it resumes)."""

    def __init__(self, job: Callable[[DictConfig, str, int], dict[str, Any]] = run_shard) -> None:
        self.job = job

    def __call__(self, cfg: DictConfig, run_dir: str, index: int) -> dict[str, Any]:
        return self.job(cfg, run_dir, index)


def gpu_groups(n_shards: int, tensor_parallel_size: Any, visible: Sequence[int]) -> list[list[int]]:
    """The GPUs each local shard gets: groups of `tensor_parallel_size` (`auto`: len(visible) // n_shards) among
    `visible`; no GPUs at all: every shard runs on CPUs."""
    if not visible:
        return [[] for _ in range(n_shards)]
    auto = isinstance(tensor_parallel_size, str)
    size = len(visible) // n_shards if auto else int(tensor_parallel_size)
    if size < 1 or size * n_shards > len(visible):
        raise ValueError(f"search.shards={n_shards} with model.tensor_parallel_size={tensor_parallel_size} needs "
                         f"{max(size, 1) * n_shards} GPUs; {len(visible)} visible ({', '.join(map(str, visible))})")
    return [list(visible[k * size:(k + 1) * size]) for k in range(n_shards)]


def visible_gpus() -> list[int]:
    """This process's GPUs by CUDA id: CUDA_VISIBLE_DEVICES when set (integer ids only), else every device."""
    ids = os.environ.get("CUDA_VISIBLE_DEVICES")
    if ids is None:
        from soar.engines.vllm_engine import visible_gpu_count

        return list(range(visible_gpu_count()))
    names = [d.strip() for d in ids.split(",") if d.strip()]
    if not all(d.isdigit() for d in names):
        raise ValueError(f"CUDA_VISIBLE_DEVICES={ids!r}: shard placement needs integer GPU ids")
    return [int(d) for d in names]


def slurm_parameters(launcher: Mapping[str, Any], n_shards: int) -> dict[str, Any]:
    """submitit's AutoExecutor parameters for one SLURM job array, one task per shard, from conf/shard_launcher/
    slurm.yaml (the same keys as conf/hydra/launcher/slurm.yaml)."""
    c = dict(launcher)
    params: dict[str, Any] = {
        "timeout_min": c["timeout_min"], "nodes": 1, "tasks_per_node": 1, "gpus_per_node": c["gpus_per_node"],
        "cpus_per_task": c["cpus_per_task"], "mem_gb": c["mem_gb"],
        "slurm_signal_delay_s": c["signal_delay_s"], "slurm_max_num_timeout": c["max_num_timeout"],
        "slurm_array_parallelism": min(int(c["array_parallelism"]), n_shards),
        "slurm_additional_parameters": dict(c.get("additional_parameters") or {}),
    }
    for key in ("partition", "account", "qos", "constraint"):
        if c.get(key) is not None:
            params[f"slurm_{key}"] = c[key]
    if c.get("setup"):
        params["slurm_setup"] = list(c["setup"])
    return params


def launch(cfg: DictConfig, run_dir: Path, todo: list[int], job: ShardJob) -> list[tuple[int, submitit.Job]]:
    """Submit the shards `todo` as configured by `shard_launcher`."""
    launcher = cfg.shard_launcher
    shards = ShardDir(run_dir)
    n = len(shards.plan())
    if launcher.name == "slurm":
        executor = submitit.AutoExecutor(folder=shards.logs / "%j", cluster="slurm")
        executor.update_parameters(name="soar-search-shard", **slurm_parameters(launcher, len(todo)))
        jobs = executor.map_array(job, [cfg] * len(todo), [str(run_dir)] * len(todo), todo)
        return list(zip(todo, jobs))
    groups = gpu_groups(n, cfg.model.get("tensor_parallel_size", 1), visible_gpus())
    submitted = []
    for k in todo:
        local = submitit.LocalExecutor(folder=shards.logs / "%j")
        local.update_parameters(timeout_min=launcher.timeout_min, gpus_per_node=len(groups[k]),
                                   visible_gpus=groups[k], signal_delay_s=launcher.signal_delay_s)
        submitted.append((k, local.submit(job, cfg, str(run_dir), k)))
    return submitted


def wait(jobs: list[tuple[int, submitit.Job]], run_dir: Path, n_shards: int, every_s: float = 5.0) -> None:
    """Wait for every shard, printing a line every `every_s` seconds; a failed shard fails the run with a message
    naming the shard and its log (the others run to their end, so a re-run only redoes what failed)."""
    shards = ShardDir(run_dir)
    start = time.monotonic()
    while True:
        running = [k for k, j in jobs if not j.done()]
        finished = sum(shards.finished(k) for k in range(n_shards))
        print(f"[shards] {finished}/{n_shards} finished, {len(running)} running · "
              f"{archived_rows(shards.run.archive)} programs archived · {time.monotonic() - start:.0f} s",
              flush=True)
        if not running:
            break
        time.sleep(every_s)
    failed = []
    for k, j in jobs:
        try:
            j.result()
        except Exception as e:  # a shard's failure, reported by name below
            message = _error_line(str(e)) or type(e).__name__
            failed.append(f"shard {k} ({len(shards.plan()[k])} tasks) failed: {message}\n  its log: {j.paths.stderr}")
    if failed:
        raise RuntimeError(f"{len(failed)} of {n_shards} shard(s) of {run_dir} failed; re-run the same command to "
                           "resume them (finished shards are kept):\n" + "\n".join(failed))


def _error_line(trace: str) -> str | None:
    """The exception line of a job's traceback ("ValueError: ..."), the last one when several."""
    lines = [line for line in trace.splitlines() if _EXCEPTION_LINE.match(line)]
    return lines[-1].strip() if lines else None


def merge_figures(figures: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shards' throughput figures as one search's: counts, seconds and rates add up (the shards ran side by
    side), phase lengths take the longest shard, per-program figures are averaged over programs, anything else
    is kept when every shard agrees (else listed per shard)."""
    weights = [f.get("programs") or f.get("n_programs_generated") or 0 for f in figures]
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for f in figures for k in f):
        values = [f.get(key) for f in figures]
        known = [v for v in values if v is not None]
        if key in _SUMMED:
            out[key] = sum(known) if known else None
        elif key in _LONGEST:
            out[key] = max(known) if known else None
        elif key in _PER_PROGRAM:
            pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w]
            out[key] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None
        elif all(isinstance(v, Mapping) for v in values):
            out[key] = merge_figures(values)  # type: ignore[arg-type]
        else:
            out[key] = values[0] if all(v == values[0] for v in values) else values
    return out


def run_sharded(cfg: DictConfig, run_dir: Path, lengths: Mapping[str, int],
                job: Callable[[DictConfig, str, int], dict[str, Any]] = run_shard) -> dict[str, Any]:
    """Plan (or check the plan of) `search.shards` shards over the tasks with prompt `lengths`, run the unfinished
    ones and wait for all; returns their merged throughput figures with `shards` (count) and, for an LLM search,
    `wall_s` (this job's)."""
    start = time.perf_counter()
    n = check_shards(cfg.search.shards, len(lengths))
    shards = ShardDir(run_dir)
    shards.fix_plan(plan_shards(lengths, n))
    todo = [k for k in range(n) if not shards.finished(k)]
    if len(todo) < n:
        print(f"[shards] {n - len(todo)} of {n} shards already finished: kept", flush=True)
    if todo:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # no ${hydra:...} in the shards
        assert isinstance(resolved, DictConfig)
        wait(launch(resolved, run_dir, todo, ShardJob(job)), run_dir, n)
    merged = {**merge_figures([shards.figures(k) for k in range(n)]), "shards": n}
    if "wall_s" in merged:  # an LLM search: the whole job's wall time, shard start-up included
        merged["wall_s"] = time.perf_counter() - start
    return merged
