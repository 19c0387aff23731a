"""One task's programs with equal outputs grouped: a search repeats answers a lot (thousands of programs, a few
hundred distinct output sets), so scoring, the filters' output checks and the vote work once per distinct outputs and
only the code-reading checks run per program."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from soar.execution.outcome import Output


@dataclass(frozen=True)
class Programs:
    """Program i has code `codes[i]` and outputs (on task.inputs, train then test) `outputs[behaviour[i]]`.
    Every entry of `outputs` is distinct by value; the list may hold entries no program uses (see `subset`)."""

    codes: Sequence[str]
    behaviour: Sequence[int]
    outputs: Sequence[tuple[Output, ...]]

    def __post_init__(self) -> None:
        if len(self.codes) != len(self.behaviour):
            raise ValueError(f"{len(self.codes)} codes but {len(self.behaviour)} behaviour indices")

    @classmethod
    def group(cls, programs: Iterable[tuple[str, Sequence[Output]]]) -> Programs:
        """Group (code, outputs) pairs by the value of their outputs, in first-seen order."""
        index: dict[tuple[Output, ...], int] = {}
        codes, behaviour = [], []
        for code, outs in programs:
            codes.append(code)
            behaviour.append(index.setdefault(tuple(outs), len(index)))
        return cls(codes, behaviour, list(index))

    def __len__(self) -> int:
        return len(self.codes)

    def subset(self, keep: Sequence[bool]) -> Programs:
        """The programs where `keep` is true, in order (the outputs list is shared, not copied)."""
        picked = [i for i, k in enumerate(keep) if k]
        return Programs([self.codes[i] for i in picked], [self.behaviour[i] for i in picked], self.outputs)
