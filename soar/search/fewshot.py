"""The few-shot pool of the sampling prompt: solved ARC-AGI-1 training tasks, one example per prompt, never the
task being solved (spec §2.3). Round t shows pool item t mod |pool| to every task, so prompts share a prefix."""
from __future__ import annotations

from pathlib import Path

from soar.archive import read_programs
from soar.data import Task, load_split
from soar.execution import Executor
from soar.scoring import score_program


class FewshotPool:
    def __init__(self, examples: list[tuple[Task, str]]) -> None:
        self.examples = examples

    @classmethod
    def from_file(cls, path: Path, executor: Executor) -> FewshotPool:
        """The programs of `path` (task_id, code; ARC-AGI-1 training tasks) that are verifiably correct on their
        task's train and test pairs, one per task. Programs are run in the sandbox like any other."""
        split = load_split("arc_agi_1", "training")
        table = read_programs(path)
        unknown = sorted(set(table.column("task_id").to_pylist()) - set(split))
        if unknown:
            raise ValueError(f"{path}: few-shot examples must be ARC-AGI-1 training tasks; unknown: {unknown}")
        rows = table.select(["task_id", "code"]).to_pylist()
        outputs = executor.run([(r["code"], split[r["task_id"]].inputs) for r in rows])
        examples: dict[str, tuple[Task, str]] = {}
        for r, outs in zip(rows, outputs):
            task = split[r["task_id"]]
            score = score_program(task, outs)
            if r["task_id"] not in examples and score.train_acc == 1.0 and all(score.correct_test or []):
                examples[r["task_id"]] = (task, r["code"])
        if not examples:
            raise ValueError(f"{path}: no program in this file solves its task; the few-shot pool would be empty")
        return cls(list(examples.values()))

    def pick(self, index: int, task_id: str) -> tuple[Task, str] | None:
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
