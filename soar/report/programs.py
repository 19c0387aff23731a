"""The best program of each task in a search run's archive, and its outputs, read without touching the archive."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from soar.archive import committed_parts, read_programs, row_outputs
from soar.data import Task, load_split
from soar.execution.outcome import Output
from soar.runs import SearchRun

OUTPUT_COLUMNS = ["program_id", "predicted_train_output", "predicted_test_output", "error"]


@dataclass(frozen=True)
class Best:
    program_id: str
    code: str
    train_acc: float
    n_test_correct: int | None  # None when the test outputs are unknown


def best_programs(search_dir: Path) -> dict[str, Best]:
    """Per task: highest train accuracy, then most test inputs right, then shortest code. {} without an archive."""
    path = SearchRun(search_dir).archive
    if not committed_parts(path):
        return {}
    t = read_programs(path, ["program_id", "train_acc", "correct_test_input"])
    best: dict[str, tuple[tuple[float, int, int], Best]] = {}
    for tid, pid, code, acc, test in zip(*(t.column(c).to_pylist() for c in
                                           ("task_id", "program_id", "code", "train_acc", "correct_test_input"))):
        n_test = None if test is None else sum(test)
        key = (acc, n_test or 0, -len(code))
        if tid not in best or key > best[tid][0]:
            best[tid] = (key, Best(pid, code, acc, n_test))
    return {tid: b for tid, (_, b) in best.items()}


@dataclass(frozen=True)
class OracleCurve:
    """Fraction of tasks with a train-perfect / fully test-correct program among their first k programs."""
    k: list[int]
    train: list[float]
    test: list[float] | None  # None when the test outputs are unknown


def oracle_curve(search_dir: Path, points: int = 200) -> OracleCurve | None:
    """The search curve of a run (archive order = generation order within a task); None without an archive."""
    path = SearchRun(search_dir).archive
    if not committed_parts(path):
        return None
    t = read_programs(path, ["train_acc", "correct_test_input"])
    seen: dict[str, int] = {}
    first_train: dict[str, int] = {}
    first_test: dict[str, int] = {}
    known = True
    for tid, acc, test in zip(*(t.column(c).to_pylist() for c in ("task_id", "train_acc", "correct_test_input"))):
        k = seen[tid] = seen.get(tid, 0) + 1
        if acc == 1.0:
            first_train.setdefault(tid, k)
        known = known and test is not None
        if test and all(test):
            first_test.setdefault(tid, k)
    n = max(seen.values(), default=0)
    if not n:
        return None
    ks = sorted({max(1, round(n * i / points)) for i in range(points + 1)})

    def frac(first: dict[str, int]) -> list[float]:
        return [sum(v <= k for v in first.values()) / len(seen) for k in ks]

    return OracleCurve(ks, frac(first_train), frac(first_test) if known else None)


def program_outputs(search_dir: Path, program_ids: list[str]) -> dict[str, list[Output]]:
    """The outputs (train inputs then test inputs) of the given programs, by program id."""
    if not program_ids:
        return {}
    dataset = ds.dataset(SearchRun(search_dir).archive, format="parquet")  # skips hidden temp files
    table = dataset.to_table(columns=OUTPUT_COLUMNS, filter=pc.field("program_id").isin(program_ids))
    return {row["program_id"]: row_outputs(row) for row in table.to_pylist()}


@cache
def _split(dataset: str, split: str, path: str | None) -> dict[str, Task]:
    return load_split(dataset, split, path)


def run_tasks(search_dir: Path) -> dict[str, Task]:
    """The tasks a search run was given, from its composed config's data.dataset/split/path (Hydra's copy, else
    the stage.yaml a loop wrote)."""
    data = SearchRun(search_dir).split()
    if data is None:
        raise FileNotFoundError(f"{search_dir}: no .hydra/config.yaml or stage.yaml naming the tasks it searched")
    return _split(*data)
