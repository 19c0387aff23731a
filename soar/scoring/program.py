"""Per-program correctness against a task's known outputs (spec §5.3)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from soar.data.task import Grid, Task
from soar.execution.outcome import CanonicalGrid, Failure, Output


def canonical(grid: Grid) -> CanonicalGrid:
    """A list-of-lists grid as the executor's canonical form: tuple of tuples of plain ints."""
    return tuple(tuple(int(v) for v in row) for row in grid)


def is_correct(output: Output, expected: Grid) -> bool:
    """Exact equality of a canonical output with the expected grid; a Failure is never correct."""
    return not isinstance(output, Failure) and output == canonical(expected)


@dataclass(frozen=True)
class ProgramScore:
    correct_train: list[bool]
    correct_test: list[bool] | None  # None when the task's test outputs are unknown
    train_acc: float  # h = mean(correct_train); 0.0 for a task without train pairs
    valid: bool  # every output is a grid, none is a Failure


def score_program(task: Task, outputs: Sequence[Output]) -> ProgramScore:
    """Score one program's outputs, given in `task.inputs` order (train inputs, then test inputs)."""
    if len(outputs) != len(task.inputs):
        raise ValueError(f"task {task.id}: expected {len(task.inputs)} outputs, got {len(outputs)}")
    n_train = len(task.train)
    train = [is_correct(o, e) for o, e in zip(outputs[:n_train], task.train_outputs)]
    expected_test = task.test_outputs
    test = None if expected_test is None else [is_correct(o, e) for o, e in zip(outputs[n_train:], expected_test)]
    return ProgramScore(
        correct_train=train,
        correct_test=test,
        train_acc=sum(train) / n_train if n_train else 0.0,
        valid=not any(isinstance(o, Failure) for o in outputs),
    )
