"""The ARC task as every stage sees it: train pairs, test pairs, test outputs possibly unknown."""
from __future__ import annotations

from dataclasses import dataclass

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
