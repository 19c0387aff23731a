"""The ARC task as every stage sees it: train pairs, test pairs, test outputs possibly unknown."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

Grid = list[list[int]]


@dataclass(frozen=True)
class Pair:
    input: Grid
    output: Grid | None  # None: unknown (a competition split's test outputs)


@dataclass(frozen=True)
class Task:
    id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]

    @property
    def inputs(self) -> list[Grid]:
        """All inputs in execution order: train inputs, then test inputs."""
        return [p.input for p in self.train] + [p.input for p in self.test]

    @property
    def train_outputs(self) -> list[Grid]:
        return [p.output for p in self.train]  # type: ignore[misc]

    @property
    def test_outputs(self) -> list[Grid] | None:
        """The test outputs, or None when any of them is unknown."""
        outs = [p.output for p in self.test]
        return None if any(o is None for o in outs) else outs  # type: ignore[return-value]


R = TypeVar("R")


def per_task(fn: Callable[[Task], R]) -> Callable[[Task], R]:
    """`fn(task)` computed once per Task object (by identity: tasks are immutable; bounded to 4096 entries), for
    what scoring and the filters derive from a task and use for each of its thousands of programs."""
    memo: dict[int, tuple[Task, R]] = {}

    @functools.wraps(fn)
    def cached(task: Task) -> R:
        hit = memo.get(id(task))
        if hit is None or hit[0] is not task:
            if len(memo) >= 4096:
                memo.clear()
            hit = memo[id(task)] = (task, fn(task))
        return hit[1]

    return cached
