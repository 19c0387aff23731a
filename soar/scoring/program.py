"""Per-program correctness against a task's known outputs (spec §5.3).

The judge is one rule, `soar.execution.canonical` (its docstring lists the decisions): a program's output is
canonicalised by it in the executor, an expected grid by it here, and `is_correct` compares the two canonical
forms. Any form of the right value counts (a tuple of tuples, a list of numpy rows...); nothing else does.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from soar.data.task import Grid, Task, per_task
from soar.execution.canonical import InvalidOutput, canonicalise
from soar.execution.outcome import CanonicalGrid, Failure, Output
from soar.execution.wire import grid_from_cells


def canonical(grid: Any) -> CanonicalGrid:
    """A grid in the executor's canonical form (tuple of tuples of ints 0..9), by the judge's rule;
    raises InvalidOutput when `grid`'s value is not a grid."""
    return grid_from_cells(*canonicalise(grid))


def is_correct(output: Output | Grid, expected: Grid) -> bool:
    """Whether `output` has the value of `expected`. Outputs from the executor and the archive are canonical
    already (tuples of tuples of ints); any other form is canonicalised first. A Failure, or an output whose
    value is not a grid, is never correct."""
    return _matches(output, canonical(expected))


def _matches(output: Output | Grid, expected: CanonicalGrid) -> bool:
    if isinstance(output, Failure):
        return False
    if not (type(output) is tuple and all(type(row) is tuple for row in output)):
        try:
            output = canonical(output)
        except InvalidOutput:
            return False
    return output == expected


@per_task
def _canonical_outputs(task: Task) -> tuple[list[CanonicalGrid], list[CanonicalGrid] | None]:
    """The task's expected train and test outputs, canonicalised once per task (scoring a search's thousands of
    programs of one task compares against them every time)."""
    test = task.test_outputs
    return [canonical(g) for g in task.train_outputs], None if test is None else [canonical(g) for g in test]


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
    expected_train, expected_test = _canonical_outputs(task)
    train = [_matches(o, e) for o, e in zip(outputs[:n_train], expected_train)]
    test = None if expected_test is None else [_matches(o, e) for o, e in zip(outputs[n_train:], expected_test)]
    return ProgramScore(
        correct_train=train,
        correct_test=test,
        train_acc=sum(train) / n_train if n_train else 0.0,
        valid=not any(isinstance(o, Failure) for o in outputs),
    )
