"""Refinement pool and parent selectors for the REX phase (spec §4, §14 fact 5). Pure logic: no LLM, no I/O.

One `RefinementPool` per (task, island). It starts from the task's valid sampled programs (at most `per_bin` per
accuracy bin) and grows by one arm per refined child. Each `select` picks one parent and counts that pick
(`n_refined`), so Thompson sampling penalises parents that were already refined: the visit count the upstream code
never increments (spec §4.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

SELECTORS = ("rex", "uniform", "greedy")
BINS = ("zero", "low", "medium", "max_zero", "max")
# Bins whose programs start as parents: with known test outputs the fully correct ("max") programs are left out.
PARENT_BINS = {True: ("zero", "low", "medium", "max_zero"), False: ("zero", "low", "medium", "max")}

# The archive stores train_acc as float32; comparing at that precision keeps float32(0.34) in "low".
_LOW_MAX, _TOP_MIN = np.float32(0.34), np.float32(0.98)


def accuracy_bin(train_acc: float, test_correct: bool | None, use_test: bool) -> str:
    """The accuracy bin of a program: "zero" (a = 0), "low" (0 < a <= 0.34), "medium" (0.34 < a < 0.98), and for
    a >= 0.98 "max" / "max_zero" (test correct / not) with `use_test`, else "max" without looking at the test."""
    a = np.float32(train_acc)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise ValueError(f"train_acc={train_acc!r}: must be in [0, 1]")
    if a == 0.0:
        return "zero"
    if a <= _LOW_MAX:
        return "low"
    if a < _TOP_MIN:
        return "medium"
    if not use_test:
        return "max"
    if test_correct is None:
        raise ValueError("use_test=True needs test_correct (the test outputs must be known)")
    return "max" if test_correct else "max_zero"


def _test_correct(row: Mapping[str, Any]) -> bool | None:
    flags = row.get("correct_test_input")
    return None if flags is None else len(flags) > 0 and all(flags)


@dataclass
class Arm:
    """One candidate parent. Owned by its pool: `select` increments `n_refined`; do not change it yourself."""
    program_id: str
    train_acc: float
    bin: str
    n_refined: int = 0
    valid: bool = True

    @property
    def h(self) -> float:
        """The success estimate Thompson sampling uses: train accuracy, 0 for an invalid program."""
        return float(self.train_acc) if self.valid else 0.0


class RefinementPool:
    """The arms of one (task, island), with h and N mirrored in numpy arrays for vectorised selection."""

    def __init__(self, arms: Iterable[Arm] = ()) -> None:
        self._arms: list[Arm] = []
        self._ids: set[str] = set()
        self._h = np.zeros(16)
        self._n = np.zeros(16, dtype=np.int64)
        for arm in arms:
            self._append(arm)

    @classmethod
    def initial(cls, rows: Sequence[Mapping[str, Any]], *, use_test: bool, per_bin: int = 300,
                rng: np.random.Generator) -> RefinementPool:
        """The starting pool of one task from its archive rows: valid programs in the parent bins, at most
        `per_bin` drawn at random per bin; arms keep the rows' order. May be empty."""
        if per_bin < 0:
            raise ValueError(f"per_bin={per_bin}: must be >= 0")
        keep = PARENT_BINS[bool(use_test)]
        by_bin: dict[str, list[int]] = {b: [] for b in keep}
        bins: dict[int, str] = {}
        for i, row in enumerate(rows):
            if not row["valid"]:
                continue
            b = accuracy_bin(row["train_acc"], _test_correct(row) if use_test else None, use_test)
            if b in by_bin:
                by_bin[b].append(i)
                bins[i] = b
        chosen: list[int] = []
        for b in keep:  # fixed order, so the draws depend only on the rng
            idx = by_bin[b]
            if len(idx) > per_bin:
                idx = [idx[j] for j in rng.choice(len(idx), size=per_bin, replace=False)]
            chosen.extend(idx)
        return cls(Arm(str(rows[i]["program_id"]), float(rows[i]["train_acc"]), bins[i]) for i in sorted(chosen))

    def add(self, program_id: str, train_acc: float, valid: bool, bin: str) -> None:
        """A refined child joins as an arm; invalid children too (h = 0), as in SOAR."""
        self._append(Arm(program_id, float(train_acc), bin, 0, bool(valid)))

    def select(self, method: str, rng: np.random.Generator, C: float = 20.0) -> Arm:
        """Pick one parent with `method` (one of SELECTORS) and count the pick in its `n_refined`."""
        if method not in SELECTORS:
            raise ValueError(f"unknown selection method {method!r}; allowed: {', '.join(SELECTORS)}")
        if not self._arms:
            raise ValueError("cannot select from an empty pool")
        size = len(self._arms)
        h, n = self._h[:size], self._n[:size]
        if method == "rex":
            if not C >= 0:
                raise ValueError(f"C={C!r}: must be >= 0")
            i = int(np.argmax(rng.beta(1.0 + C * h, 1.0 + C * (1.0 - h) + n)))
        elif method == "uniform":
            i = int(rng.integers(size))
        else:  # greedy: highest h, then fewest refinements, then first added (argmin returns the first)
            best = np.flatnonzero(h == h.max())
            i = int(best[np.argmin(n[best])])
        self._n[i] += 1
        arm = self._arms[i]
        arm.n_refined += 1
        return arm

    @property
    def arms(self) -> tuple[Arm, ...]:
        """The arms in the order they joined."""
        return tuple(self._arms)

    def __len__(self) -> int:
        return len(self._arms)

    def _append(self, arm: Arm) -> None:
        if arm.bin not in BINS:
            raise ValueError(f"unknown bin {arm.bin!r}; allowed: {', '.join(BINS)}")
        if not 0.0 <= arm.train_acc <= 1.0:
            raise ValueError(f"{arm.program_id}: train_acc={arm.train_acc!r} must be in [0, 1]")
        if arm.n_refined < 0:
            raise ValueError(f"{arm.program_id}: n_refined={arm.n_refined} must be >= 0")
        if arm.program_id in self._ids:
            raise ValueError(f"program {arm.program_id!r} is already in the pool")
        size = len(self._arms)
        if size == len(self._h):  # amortised growth: double the arrays
            self._h = np.concatenate([self._h, np.zeros(size)])
            self._n = np.concatenate([self._n, np.zeros(size, dtype=np.int64)])
        self._h[size], self._n[size] = arm.h, arm.n_refined
        self._arms.append(arm)
        self._ids.add(arm.program_id)
