"""Refinement pool and parent selectors for the REX phase (spec §4, §14 fact 5). Pure logic: no LLM, no I/O.

One `RefinementPool` per (task, island): its arms are the candidate parents. Decisions:
- Starting parents (spec §4.1): the task's sampled programs that pass SOAR's filters (spec §7.2,
  `soar.scoring.filters.keep_program`: valid grids on every input, not all-background, not near-constant, not mostly
  identity, no overlong line, no hard-coded output), binned by train accuracy (`soar.scoring.bins`), at most
  `per_bin` drawn at random per parent bin. A program that copies the train outputs into its code (h = 1) is thus
  never a starting parent. `initial_pools` filters a task once for all its islands.
- Refined children join unfiltered: SOAR appends every child to its REX archive, failed ones included (spec §4.3
  step 4, §14 fact 5: "every child joins the pool"). The spec is explicit here, so soar does the same.
- h = the train accuracy, mean of the per-train-pair flags, whatever happened on other inputs (spec §5.3: errors
  count per input): a child right on 3 of 4 train pairs that crashes on the test input has h = 0.75. A program that
  fails on every input has h = 0.
- N (`Arm.n_refined`) counts the completions generated from an arm: `select` picks, `visit(arm, k)` then adds the k
  children generated from the pick (paper Fig. 11, `cnt[p] += n_completions`; the upstream code never increments N,
  spec §4.2). A pick whose prompt is never generated (too long for the context) is not counted, so N always equals
  the arm's children in the archive, which is how a resumed run restores it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soar.data import Task
from soar.scoring.bins import BINS, PARENT_BINS, row_bin
from soar.scoring.filters import keep_program

SELECTORS = ("rex", "uniform", "greedy")


@dataclass
class Arm:
    """One candidate parent. Owned by its pool: change `n_refined` through `RefinementPool.visit` only."""
    program_id: str
    train_acc: float  # h, the success estimate Thompson sampling uses
    bin: str
    n_refined: int = 0  # N: completions generated from this arm


class RefinementPool:
    """The arms of one (task, island), with h and N mirrored in numpy arrays for vectorised selection."""

    def __init__(self, arms: Iterable[Arm] = ()) -> None:
        self._arms: list[Arm] = []
        self._index: dict[str, int] = {}
        self._h = np.zeros(16)
        self._n = np.zeros(16, dtype=np.int64)
        for arm in arms:
            self._append(arm)

    def add(self, program_id: str, train_acc: float, bin: str, n_refined: int = 0) -> None:
        """A refined child joins as an arm, whatever its outputs (spec §4.3)."""
        self._append(Arm(program_id, float(train_acc), bin, n_refined))

    def select(self, method: str, rng: np.random.Generator, C: float = 20.0) -> Arm:
        """Pick one parent with `method` (one of SELECTORS); count its completions with `visit`."""
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
        return self._arms[i]

    def visit(self, program_id: str, completions: int) -> None:
        """Count `completions` children generated from the arm `program_id` (Fig. 11: cnt += n_completions)."""
        if completions < 0:
            raise ValueError(f"completions={completions}: must be >= 0")
        i = self._index.get(program_id)
        if i is None:
            raise KeyError(f"program {program_id!r} is not in the pool")
        self._n[i] += completions
        self._arms[i].n_refined += completions

    @property
    def arms(self) -> tuple[Arm, ...]:
        """The arms in the order they joined."""
        return tuple(self._arms)

    def __contains__(self, program_id: object) -> bool:
        return program_id in self._index

    def __len__(self) -> int:
        return len(self._arms)

    def _append(self, arm: Arm) -> None:
        if arm.bin not in BINS:
            raise ValueError(f"unknown bin {arm.bin!r}; allowed: {', '.join(BINS)}")
        if not 0.0 <= arm.train_acc <= 1.0:
            raise ValueError(f"{arm.program_id}: train_acc={arm.train_acc!r} must be in [0, 1]")
        if arm.n_refined < 0:
            raise ValueError(f"{arm.program_id}: n_refined={arm.n_refined} must be >= 0")
        if arm.program_id in self._index:
            raise ValueError(f"program {arm.program_id!r} is already in the pool")
        size = len(self._arms)
        if size == len(self._h):  # amortised growth: double the arrays
            self._h = np.concatenate([self._h, np.zeros(size)])
            self._n = np.concatenate([self._n, np.zeros(size, dtype=np.int64)])
        self._h[size], self._n[size] = arm.train_acc, arm.n_refined
        self._index[arm.program_id] = size
        self._arms.append(arm)


def initial_pools(rows: Sequence[Mapping[str, Any]], task: Task, *, use_test: bool, per_bin: int = 300,
                  rngs: Sequence[np.random.Generator]) -> list[RefinementPool]:
    """One starting pool per rng (one per island) from `task`'s archive rows: the programs that pass the filters of
    spec §7.2, in the parent bins, at most `per_bin` drawn at random per bin; arms keep the rows' order. May be
    empty."""
    if per_bin < 0:
        raise ValueError(f"per_bin={per_bin}: must be >= 0")
    keep = PARENT_BINS[bool(use_test)]
    by_bin: dict[str, list[int]] = {b: [] for b in keep}
    bins: dict[int, str] = {}
    for i, row in enumerate(rows):
        if row["task_id"] != task.id:
            raise ValueError(f"program {row['program_id']!r} is for task {row['task_id']}, not {task.id}")
        b = row_bin(row, use_test)
        if b in by_bin and keep_program(row, task) is None:
            by_bin[b].append(i)
            bins[i] = b
    pools = []
    for rng in rngs:
        chosen: list[int] = []
        for b in keep:  # fixed order, so the draws depend only on the rng
            idx = by_bin[b]
            if len(idx) > per_bin:
                idx = [idx[j] for j in rng.choice(len(idx), size=per_bin, replace=False)]
            chosen.extend(idx)
        pools.append(RefinementPool(Arm(str(rows[i]["program_id"]), float(rows[i]["train_acc"]), bins[i])
                                    for i in sorted(chosen)))
    return pools
