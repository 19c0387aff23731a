"""Validity and anti-hardcoding filters applied to every archived program before it becomes data (spec §5.2, §7.2).

`keep_program(row, task)` returns None when the program passes, else the name of the first filter (in FILTERS
order) that rejects it. Only the task's train pairs and the program's own outputs are looked at: never the task's
test outputs nor the row's `correct_test_input`, so the filters are safe for evaluation splits / test-time training.

Decisions where the spec is silent:
- Near-constant: the mean pairwise distance needs >= 2 train outputs; with a single train pair the filter does not
  apply (upstream would compare a NaN, which never rejects).
- All-background: only applies when the task has test inputs (an empty "every test output" would reject all).
- Hardcoding: brackets are kept (exact "[[v]]" match) when the task has a 1x1 true train output (spec) and also for
  a predicted grid that is itself 1x1: with brackets stripped its string is one digit, found in nearly every code.
"""
from __future__ import annotations

from numbers import Integral
from typing import Any, Mapping, Sequence

import numpy as np

from soar.data.task import Task

MAX_SIDE = 40  # spec §5.2: both dimensions <= 40
MAX_LINE = 200  # spec §7.2.5: no code line longer than this
NEAR_CONSTANT = 0.2  # spec §7.2.3
IDENTITY = 0.3  # spec §7.2.4
# Filter names, in the order they are checked; keep_program returns one of these.
FILTERS = ("invalid_grid", "all_background", "near_constant", "identity", "long_line", "hardcoded_output")


def valid_grid(grid: Any) -> bool:
    """Spec §5.2: a non-empty rectangular grid of ints 0..9, both sides <= 40."""
    if not isinstance(grid, (list, tuple)) or not grid or len(grid) > MAX_SIDE:
        return False
    if not all(isinstance(r, (list, tuple)) for r in grid):
        return False
    width = len(grid[0])
    if width == 0 or width > MAX_SIDE or any(len(r) != width for r in grid):
        return False
    cells = [v for r in grid for v in r]
    if not all(type(v) is int for v in cells):  # slow path: numpy integers pass, bools and floats do not
        if not all(isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) for v in cells):
            return False
    return 0 <= min(cells) and max(cells) <= 9


def grid_distance(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """Spec §7.2.3: pad both grids with -1 to a common shape, then the fraction of differing cells among the cells
    where either grid is non-zero (0.0 when there are none)."""
    rows = max(len(a), len(b))
    cols = max(len(a[0]) if len(a) else 0, len(b[0]) if len(b) else 0)
    pa, pb = np.full((rows, cols), -1, dtype=np.int16), np.full((rows, cols), -1, dtype=np.int16)
    if len(a):
        pa[: len(a), : len(a[0])] = np.asarray(a, dtype=np.int16)
    if len(b):
        pb[: len(b), : len(b[0])] = np.asarray(b, dtype=np.int16)
    mask = (pa != 0) | (pb != 0)
    n = int(mask.sum())
    return 0.0 if n == 0 else float((pa != pb)[mask].sum()) / n


def mean_pairwise_distance(grids: Sequence[Sequence[Sequence[int]]]) -> float | None:
    """Mean grid_distance over all pairs of `grids` (vectorised); None with fewer than 2 grids."""
    n = len(grids)
    if n < 2:
        return None
    shapes = np.array([(len(g), len(g[0]) if len(g) else 0) for g in grids])
    rows, cols = int(shapes[:, 0].max()), int(shapes[:, 1].max())
    stack = np.full((n, rows, cols), -1, dtype=np.int16)
    for k, g in enumerate(grids):
        if len(g):
            stack[k, : len(g), : len(g[0])] = np.asarray(g, dtype=np.int16)
    i, j = np.triu_indices(n, 1)
    a, b = stack[i], stack[j]
    # a pair is compared on its own common shape: padding beyond it would add equal non-zero cells
    region = ((np.arange(rows)[None, :, None] < np.maximum(shapes[i, 0], shapes[j, 0])[:, None, None])
              & (np.arange(cols)[None, None, :] < np.maximum(shapes[i, 1], shapes[j, 1])[:, None, None]))
    mask = ((a != 0) | (b != 0)) & region
    total = mask.sum(axis=(1, 2))
    differ = ((a != b) & mask).sum(axis=(1, 2))
    dist = np.where(total > 0, differ / np.maximum(total, 1), 0.0)
    return float(dist.mean())


def _same(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> bool:
    return [list(r) for r in a] == [list(r) for r in b]


def _all_zero(grid: Sequence[Sequence[int]]) -> bool:
    return all(v == 0 for r in grid for v in r)


def _grid_text(grid: Sequence[Sequence[int]]) -> str:
    """str() of the grid as a list of lists, without whitespace: "[[1,2],[3,4]]"."""
    return "[" + ",".join("[" + ",".join(str(int(v)) for v in r) + "]" for r in grid) + "]"


def _strip(text: str, brackets: bool) -> str:
    text = "".join(text.split())
    return text.replace("[", "").replace("]", "") if brackets else text


def hardcoded_output(code: str, outputs: Sequence[Sequence[Sequence[int]]], task: Task) -> bool:
    """Spec §7.2.5: some predicted output's text appears in the code (whitespace removed; brackets removed too
    unless the task has a 1x1 true train output or the grid itself is 1x1)."""
    task_1x1 = any(len(p.output) == 1 and len(p.output[0]) == 1 for p in task.train)  # type: ignore[arg-type]
    stripped = {False: _strip(code, False), True: _strip(code, True)}
    for grid in outputs:
        brackets = not (task_1x1 or (len(grid) == 1 and len(grid[0]) == 1))
        if _strip(_grid_text(grid), brackets) in stripped[brackets]:
            return True
    return False


class _TaskFacts:
    """What the filters need from a task's train pairs, computed once per task."""

    def __init__(self, task: Task) -> None:
        true_out = [p.output for p in task.train]
        self.n_train = len(task.train)
        self.any_zero = any(_all_zero(g) for g in true_out)  # type: ignore[arg-type]
        self.spread = mean_pairwise_distance(true_out)  # type: ignore[arg-type]
        self.identity = (sum(_same(p.output, p.input) for p in task.train) / self.n_train  # type: ignore[arg-type]
                         if self.n_train else 0.0)


_FACTS: dict[int, tuple[Task, _TaskFacts]] = {}


def _facts(task: Task) -> _TaskFacts:
    hit = _FACTS.get(id(task))
    if hit is not None and hit[0] is task:
        return hit[1]
    if len(_FACTS) >= 4096:
        _FACTS.clear()
    facts = _TaskFacts(task)
    _FACTS[id(task)] = (task, facts)
    return facts


def keep_program(row: Mapping[str, Any], task: Task) -> str | None:
    """None if the program in `row` passes every filter of spec §7.2 on `task`, else the rejecting filter's name.

    Reads only the row's code and predicted outputs, and the task's train pairs.
    """
    train_out, test_out = list(row["predicted_train_output"]), list(row["predicted_test_output"])
    if len(train_out) != len(task.train) or len(test_out) != len(task.test):
        raise ValueError(
            f"program {row.get('program_id')!r}: {len(train_out)}+{len(test_out)} outputs, task {task.id} has "
            f"{len(task.train)}+{len(task.test)} inputs")
    if not all(valid_grid(g) for g in train_out + test_out):
        return "invalid_grid"
    facts = _facts(task)
    if test_out and all(_all_zero(g) for g in test_out) and not facts.any_zero:
        return "all_background"
    pred_spread = mean_pairwise_distance(train_out)
    if pred_spread is not None and pred_spread < min(NEAR_CONSTANT, facts.spread):  # type: ignore[type-var]
        return "near_constant"
    if facts.n_train:
        pred_id = sum(_same(o, p.input) for o, p in zip(train_out, task.train)) / facts.n_train
        if pred_id > max(IDENTITY, facts.identity):
            return "identity"
    code = row["code"] or ""
    if any(len(line) > MAX_LINE for line in code.splitlines()):
        return "long_line"
    if hardcoded_output(code, train_out + test_out, task):
        return "hardcoded_output"
    return None
