"""SOAR's validity and anti-hardcoding filters (spec §5.2, §7.2): they decide which programs vote for the final answer
(soar.scoring.metrics, as in Alg. 3: execute, filter, vote) and which archived programs become training data
(soar.hindsight).

`keep_program(row, task)` returns None when the program passes, else the name of the first filter (in FILTERS
order) that rejects it. `keep_programs(task, programs)` does the same for executor outputs, checking each distinct
set of outputs once (a search repeats answers a lot). Only the task's train pairs and the program's own outputs are
looked at: never the task's test outputs nor the row's `correct_test_input`, so the filters are safe for evaluation
splits / test-time training, and the vote they restrict never sees ground truth.

Decisions where the spec is silent:
- Near-constant: the mean pairwise distance needs >= 2 train outputs; with a single train pair the filter does not
  apply (upstream would compare a NaN, which never rejects).
- All-background: only applies when the task has test inputs (an empty "every test output" would reject all).
- Hardcoding: brackets are kept (exact "[[v]]" match) when the task has a 1x1 true train output (spec) and also for
  a predicted grid that is itself 1x1: with brackets stripped its string is one digit, found in nearly every code.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from itertools import chain
from numbers import Integral
from typing import Any

import numpy as np

from soar.data.task import Task, per_task
from soar.execution.outcome import MAX_SIDE, Failure, Output
from soar.scoring.programs import Programs

MAX_LINE = 200  # spec §7.2.5: no code line longer than this
NEAR_CONSTANT = 0.2  # spec §7.2.3
IDENTITY = 0.3  # spec §7.2.4
# Filter names, in the order they are checked; keep_program returns one of these.
FILTERS = ("invalid_grid", "all_background", "near_constant", "identity", "long_line", "hardcoded_output")


def valid_grid(grid: Any) -> bool:
    """Spec §5.2: a non-empty rectangular grid of ints 0..9, both sides <= MAX_SIDE (40)."""
    if not isinstance(grid, (list, tuple)) or not grid or len(grid) > MAX_SIDE:
        return False
    if not all(isinstance(r, (list, tuple)) for r in grid):
        return False
    width = len(grid[0])
    if width == 0 or width > MAX_SIDE or any(len(r) != width for r in grid):
        return False
    types = set(map(type, chain.from_iterable(grid)))
    if types != {int}:  # slow path: numpy integers pass, bools and floats do not
        if not all(issubclass(t, Integral) and not issubclass(t, (bool, np.bool_)) for t in types):
            return False
    return 0 <= min(map(min, grid)) and max(map(max, grid)) <= 9


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


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def mean_pairwise_distance(grids: Sequence[Sequence[Sequence[int]]]) -> float | None:
    """Mean grid_distance over all pairs of `grids` (vectorised); None with fewer than 2 grids."""
    n = len(grids)
    if n < 2:
        return None
    i, j = _pairs(n)
    shapes = [(len(g), len(g[0]) if len(g) else 0) for g in grids]
    if all(s == shapes[0] for s in shapes):  # the common case: no padding, so differing cells are non-zero cells
        flat = np.asarray(grids, dtype=np.int16).reshape(n, -1)
        a, b = flat[i], flat[j]
        total, differ = np.count_nonzero(a | b, axis=1), np.count_nonzero(a != b, axis=1)
    else:
        shape = np.array(shapes)
        rows, cols = int(shape[:, 0].max()), int(shape[:, 1].max())
        stack = np.full((n, rows, cols), -1, dtype=np.int16)
        for k, g in enumerate(grids):
            if len(g):
                stack[k, : len(g), : len(g[0])] = np.asarray(g, dtype=np.int16)
        a, b = stack[i], stack[j]
        # a pair is compared on its own common shape: padding beyond it would add equal non-zero cells
        region = ((np.arange(rows)[None, :, None] < np.maximum(shape[i, 0], shape[j, 0])[:, None, None])
                  & (np.arange(cols)[None, None, :] < np.maximum(shape[i, 1], shape[j, 1])[:, None, None]))
        mask = ((a != 0) | (b != 0)) & region
        total, differ = mask.sum(axis=(1, 2)), ((a != b) & mask).sum(axis=(1, 2))
    return float(np.where(total > 0, differ / np.maximum(total, 1), 0.0).sum()) / len(i)


def _same(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> bool:
    return [list(r) for r in a] == [list(r) for r in b]


def _all_zero(grid: Sequence[Sequence[int]]) -> bool:
    return all(v == 0 for r in grid for v in r)


_DIGITS = bytes.maketrans(bytes(range(10)), b"0123456789")


def _grid_text(grid: Sequence[Sequence[int]], brackets: bool) -> str:
    """str() of a valid grid as a list of lists without whitespace, "[[1,2],[3,4]]"; without brackets "1,2,3,4"."""
    rows = [",".join(bytes(r).translate(_DIGITS).decode()) for r in grid]  # cells are 0..9: one char each
    return "[[" + "],[".join(rows) + "]]" if brackets else ",".join(rows)


def _strip(text: str, keep_brackets: bool) -> str:
    text = "".join(text.split())
    return text if keep_brackets else text.replace("[", "").replace("]", "")


_NO_DIGITS = str.maketrans("", "", "0123456789")


class GridText:
    """A predicted grid as the hardcoding check looks for it in a code: its cell count, whether its brackets are
    kept, and its text, made when a code first has enough digits to hold it (most codes have far fewer digits than
    a grid has cells, so most texts are never made)."""

    __slots__ = ("cells", "keep", "grid", "_text")

    def __init__(self, grid: Sequence[Sequence[int]], task_1x1: bool) -> None:
        self.cells, self.grid, self._text = len(grid) * len(grid[0]), grid, ""
        self.keep = task_1x1 or self.cells == 1

    @property
    def text(self) -> str:
        if not self._text:
            self._text = _grid_text(self.grid, self.keep)
        return self._text


def _grid_texts(outputs: Sequence[Sequence[Sequence[int]]], task_1x1: bool) -> list[GridText]:
    """What the hardcoding check looks for in the code, per predicted grid (made once per distinct outputs)."""
    return [GridText(grid, task_1x1) for grid in outputs]


def _in_code(code: str, texts: Sequence[GridText]) -> bool:
    digits = len(code) - len(code.translate(_NO_DIGITS))
    stripped: dict[bool, str] = {}  # the code without whitespace, with / without brackets; built when needed
    for grid in texts:
        if grid.cells > digits:  # its text has one digit per cell: more than the code has
            continue
        if grid.keep not in stripped:
            stripped[grid.keep] = _strip(code, grid.keep)
        if grid.text in stripped[grid.keep]:
            return True
    return False


def hardcoded_output(code: str, outputs: Sequence[Sequence[Sequence[int]]], task: Task) -> bool:
    """Spec §7.2.5: some predicted output's text appears in the code (whitespace removed; brackets removed too
    unless the task has a 1x1 true train output or the grid itself is 1x1)."""
    return _in_code(code, _grid_texts(outputs, _facts(task).task_1x1))


class _TaskFacts:
    """What the filters need from a task's train pairs, computed once per task."""

    def __init__(self, task: Task) -> None:
        true_out = [p.output for p in task.train]
        self.n_train, self.n_test = len(task.train), len(task.test)
        self.inputs = [p.input for p in task.train]
        self.any_zero = any(_all_zero(g) for g in true_out)  # type: ignore[arg-type]
        self.spread = mean_pairwise_distance(true_out)  # type: ignore[arg-type]
        self.identity = (sum(_same(p.output, p.input) for p in task.train) / self.n_train  # type: ignore[arg-type]
                         if self.n_train else 0.0)
        self.task_1x1 = any(len(g) == 1 and len(g[0]) == 1 for g in true_out)  # type: ignore[arg-type, index]


_facts = per_task(_TaskFacts)


def _outputs_verdict(train_out: list[Any], test_out: list[Any], facts: _TaskFacts) -> str | None:
    """The filters after invalid_grid that read only the (valid) outputs."""
    if test_out and all(_all_zero(g) for g in test_out) and not facts.any_zero:
        return "all_background"
    if facts.spread:  # None (< 2 train pairs) or 0.0 (constant truth): nothing is below the threshold
        pred_spread = mean_pairwise_distance(train_out)
        if pred_spread is not None and pred_spread < min(NEAR_CONSTANT, facts.spread):
            return "near_constant"
    if facts.n_train:
        pred_id = sum(_same(o, i) for o, i in zip(train_out, facts.inputs)) / facts.n_train
        if pred_id > max(IDENTITY, facts.identity):
            return "identity"
    return None


def _code_verdict(code: str, texts: Sequence[GridText]) -> str | None:
    """The filters that read the code: long_line, hardcoded_output (`texts`: the program's grids, _grid_texts)."""
    if len(code) > MAX_LINE and max(map(len, code.splitlines())) > MAX_LINE:
        return "long_line"
    return "hardcoded_output" if _in_code(code, texts) else None


def keep_program(row: Mapping[str, Any], task: Task) -> str | None:
    """None if the program in `row` passes every filter of spec §7.2 on `task`, else the rejecting filter's name.

    Reads only the row's code and predicted outputs (None for a failed input), and the task's train pairs.
    """
    train_out, test_out = _outputs(row, task)
    verdict = _grids_verdict(train_out, test_out, _facts(task))
    if verdict is not None:
        return verdict
    return _code_verdict(row["code"] or "", _grid_texts(train_out + test_out, _facts(task).task_1x1))


def keep_rows(task: Task, rows: Iterable[Mapping[str, Any]]) -> list[str | None]:
    """keep_program for each row of `task` read from an archive (its cells are ints); rows with the same outputs
    share the checks on them, so a search's many duplicates cost one check, as in keep_programs."""
    facts = _facts(task)
    seen: dict[tuple[Any, ...], tuple[str | None, list[GridText]]] = {}  # per distinct outputs: verdict, texts
    verdicts = []
    for row in rows:
        train_out, test_out = _outputs(row, task)
        key = tuple(None if g is None else tuple(map(tuple, g)) for g in train_out + test_out)
        if key not in seen:
            verdict = _grids_verdict(train_out, test_out, facts)
            seen[key] = verdict, [] if verdict else _grid_texts(train_out + test_out, facts.task_1x1)
        verdict, texts = seen[key]
        verdicts.append(verdict if verdict is not None else _code_verdict(row["code"] or "", texts))
    return verdicts


def _outputs(row: Mapping[str, Any], task: Task) -> tuple[list[Any], list[Any]]:
    train_out, test_out = list(row["predicted_train_output"]), list(row["predicted_test_output"])
    if len(train_out) != len(task.train) or len(test_out) != len(task.test):
        raise ValueError(
            f"program {row.get('program_id')!r}: {len(train_out)}+{len(test_out)} outputs, task {task.id} has "
            f"{len(task.train)}+{len(task.test)} inputs")
    return train_out, test_out


def _grids_verdict(train_out: list[Any], test_out: list[Any], facts: _TaskFacts) -> str | None:
    """invalid_grid, then the filters that read only the outputs."""
    if not all(valid_grid(g) for g in train_out + test_out):
        return "invalid_grid"
    return _outputs_verdict(train_out, test_out, facts)


def keep_programs(task: Task, programs: Iterable[tuple[str, Sequence[Output]]] | Programs) -> list[str | None]:
    """keep_program for each (code, executor outputs on task.inputs) of `task`, or each program of a `Programs`.

    An executor output is a Failure (invalid_grid) or a CanonicalGrid, valid by construction, so valid_grid is not
    run again. Programs with the same outputs share the work on them: a search's many duplicates cost one check.
    """
    if not isinstance(programs, Programs):
        programs = Programs.group(programs)
    facts = _facts(task)
    checked: dict[int, tuple[str | None, list[GridText]]] = {}  # per used behaviour: outputs verdict, grid texts
    verdicts = []
    for code, b in zip(programs.codes, programs.behaviour):
        if b not in checked:
            outs = programs.outputs[b]
            if len(outs) != facts.n_train + facts.n_test:
                raise ValueError(f"task {task.id}: expected {facts.n_train + facts.n_test} outputs, got {len(outs)}")
            grids: list[Any] = list(outs)
            verdict = ("invalid_grid" if any(isinstance(o, Failure) for o in outs)
                       else _outputs_verdict(grids[: facts.n_train], grids[facts.n_train :], facts))
            checked[b] = verdict, [] if verdict else _grid_texts(grids, facts.task_1x1)
        verdict, texts = checked[b]
        verdicts.append(verdict if verdict is not None else _code_verdict(code, texts))
    return verdicts
