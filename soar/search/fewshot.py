"""The few-shot pool of the sampling prompt (spec §2.3, paper App. D.5): one solved example per prompt, never the
task being solved. Round t shows pool item t mod |pool| to every task, so prompts share a prefix.

What a search sees, in pool order:
1. Solutions from earlier searches (`search.fewshot_archives`, run dirs): per task, the first archived program that
   the executor verifies right on every train and test pair against the true outputs. The loop gives iteration
   i > 0 its main searches of iterations i-1, ..., 0, so a task's example comes from the latest generation that
   solved it (the paper: "from the previous generation"); iteration 0 gets none.
2. The shipped examples (`search.fewshot`, ARC-AGI-1 training tasks), verified the same way, for tasks not in 1.
3. On the training split, solutions the run finds, as it finds them (a resumed run starts with its own so far).
With `search.use_fewshot: false` the pool stays empty: every prompt is the no-few-shot one (spec §2.3).
Split rule: only tasks with ground truth give examples. An archive that searched a split other than `training`
(evaluation, test-time training) is refused, and a search on such a split shows none of that split's tasks.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from soar.archive import ProgramArchive, read_programs, solved
from soar.data import Task, load_split
from soar.execution import Executor
from soar.runs import SearchRun, ground_truth_allowed
from soar.scoring import score_program

Example = tuple[Task, str]
KEY = "search.fewshot_archives"


def archive_split(run_dir: Path) -> tuple[str, str, str | None]:
    """(dataset, split, path) that the search in `run_dir` ran on; an error unless it can give few-shot examples."""
    run = SearchRun(run_dir)
    if not run.finished:
        raise FileNotFoundError(f"{KEY}: {run_dir} is not a finished search run dir")
    data = run.split()
    if data is None:
        raise ValueError(f"{KEY}: {run_dir} has no config (.hydra/config.yaml or stage.yaml) telling which split "
                         "it searched; only training-split searches can give few-shot examples")
    if not ground_truth_allowed(data[1]):
        raise ValueError(f"{KEY}: {run_dir} searched {data[0]}/{data[1]}: few-shot examples come only from "
                         "training-split searches, whose programs are verified against ground truth")
    return data


def verified(candidates: Iterable[Example], executor: Executor) -> dict[str, Example]:
    """Per task (in order of first appearance), the first candidate that the executor finds right on every train
    and test pair. A task's candidates are tried in order, one per task per batch, until one passes."""
    queues: dict[str, list[Example]] = {}
    for task, code in candidates:
        queue = queues.setdefault(task.id, [])
        if all(code != c for _, c in queue):
            queue.append((task, code))
    found: dict[str, Example | None] = dict.fromkeys(queues)
    depth = 0
    while batch := [q[depth] for tid, q in queues.items() if found[tid] is None and depth < len(q)]:
        for (task, code), outputs in zip(batch, executor.run([(code, task.inputs) for task, code in batch])):
            score = score_program(task, outputs)
            if score.train_acc == 1.0 and score.correct_test and all(score.correct_test):
                found[task.id] = (task, code)
        depth += 1
    return {tid: ex for tid, ex in found.items() if ex is not None}


def archive_examples(run_dir: Path, executor: Executor) -> dict[str, Example]:
    """The verified solutions of the training-split search in `run_dir` (candidates: rows it scored solved)."""
    tasks = load_split(*archive_split(run_dir))
    table = ProgramArchive(SearchRun(run_dir).archive).read(["task_id", "code", "train_acc", "correct_test_input"])
    rows = table.filter(pc.equal(table.column("train_acc"), 1.0)).to_pylist()
    unknown = sorted({r["task_id"] for r in rows} - set(tasks))
    if unknown:
        raise ValueError(f"{KEY}: {run_dir} holds programs of tasks not in the split it searched: {unknown[:5]}")
    return verified(((tasks[r["task_id"]], r["code"]) for r in rows if solved(r)), executor)


def file_examples(path: Path, executor: Executor) -> dict[str, Example]:
    """The programs of `path` (task_id, code; ARC-AGI-1 training tasks) that are verifiably correct."""
    split = load_split("arc_agi_1", "training")
    table = read_programs(path)
    unknown = sorted(set(table.column("task_id").to_pylist()) - set(split))
    if unknown:
        raise ValueError(f"{path}: few-shot examples must be ARC-AGI-1 training tasks; unknown: {unknown}")
    examples = verified(((split[r["task_id"]], r["code"]) for r in table.select(["task_id", "code"]).to_pylist()),
                        executor)
    if not examples:
        raise ValueError(f"{path}: no program in this file solves its task; the few-shot pool would be empty")
    return examples


class FewshotPool:
    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples

    @classmethod
    def build(cls, file: Path, archives: Sequence[Path], executor: Executor,
              exclude: Collection[str] = ()) -> FewshotPool:
        """Items 1 and 2 of the module docstring, one per task, without the tasks in `exclude`."""
        examples: dict[str, Example] = {}
        for source in [*(archive_examples(d, executor) for d in archives), file_examples(file, executor)]:
            for tid, example in source.items():
                examples.setdefault(tid, example)
        return cls([ex for tid, ex in examples.items() if tid not in exclude])

    def pick(self, index: int, task_id: str) -> Example | None:
        """Example number `index` (cyclic), or the next one when that is the task itself."""
        for k in range(len(self.examples)):
            example = self.examples[(index + k) % len(self.examples)]
            if example[0].id != task_id:
                return example
        return None

    def add(self, task: Task, code: str) -> None:
        """A solution found during the run joins the pool (one per task)."""
        if all(t.id != task.id for t, _ in self.examples):
            self.examples.append((task, code))

    def add_solved(self, rows: Iterable[Mapping[str, Any]], tasks: Mapping[str, Task]) -> None:
        """The run's solved rows (scored against its tasks' true outputs) join the pool, in order."""
        for r in rows:
            if solved(r) and r["task_id"] in tasks:
                self.add(tasks[r["task_id"]], r["code"])
