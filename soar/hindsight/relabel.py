"""Hindsight relabelling and deduplication (spec §7.1, §7.3, §7.4).

`relabel(task, row)` keeps the task's inputs and replaces every output (train and test) by the program's own
output, so the program is correct on the new task by construction. `dedup_by_output` keeps one program per
distinct tuple of all its outputs, the first one seen: the intended behaviour of the upstream function, which
always returns nothing (spec §7.4). `dedup_by_code` stands in for the embedding dedup (§7.3): by exact code, or by
near-duplicate key (soar.hindsight.near_duplicates).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from soar.data.task import Grid, Pair, Task
from soar.hindsight.near_duplicates import normalised_code

R = TypeVar("R", bound=Mapping[str, Any])


def _grid(g: Sequence[Sequence[int]]) -> Grid:
    return [[int(v) for v in r] for r in g]


def relabel(task: Task, row: Mapping[str, Any]) -> Task:
    """The task with the inputs of `task` and the outputs of the program in `row` (train and test); same id.

    Raises ValueError if the program failed on some input (a NULL grid) or its outputs do not match the task.
    """
    train_out, test_out = list(row["predicted_train_output"]), list(row["predicted_test_output"])
    if len(train_out) != len(task.train) or len(test_out) != len(task.test):
        raise ValueError(
            f"program {row.get('program_id')!r}: {len(train_out)}+{len(test_out)} outputs, task {task.id} has "
            f"{len(task.train)}+{len(task.test)} inputs")
    if any(g is None for g in train_out + test_out):
        raise ValueError(f"program {row.get('program_id')!r} failed on some input of task {task.id}: cannot relabel")
    return Task(
        id=task.id,
        train=tuple(Pair(p.input, _grid(o)) for p, o in zip(task.train, train_out)),
        test=tuple(Pair(p.input, _grid(o)) for p, o in zip(task.test, test_out)),
    )


def output_key(row: Mapping[str, Any]) -> tuple[Hashable, ...]:
    """A hashable form of ALL the row's outputs: train then test, grids as tuples of tuples, NULL as None."""
    return tuple(
        None if g is None else tuple(map(tuple, g))  # archive cells are ints: equal and hashed as ints
        for g in list(row["predicted_train_output"]) + list(row["predicted_test_output"])
    )


def dedup_by_output(rows: Sequence[R]) -> list[R]:
    """One row per distinct tuple of all outputs (train + test), the first of each kept, in input order.
    Rows of different tasks never collide unless their outputs are equal: call it per task."""
    seen: set[Hashable] = set()
    kept: list[R] = []
    for row in rows:
        key = output_key(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def dedup_by_code(rows: Sequence[R], normalise: bool = False) -> list[R]:
    """One row per distinct code: exact code (surrounding whitespace ignored), or with `normalise` one per
    near-duplicate key. The shortest code of each group is kept (the first on ties), where the group first appears."""
    best: dict[str, R] = {}
    for row in rows:
        code = row["code"] or ""
        key = normalised_code(code) if normalise else code.strip()
        if key not in best or len(code) < len(best[key]["code"] or ""):
            best[key] = row
    return list(best.values())
