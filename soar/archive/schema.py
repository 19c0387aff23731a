"""One archive row per program: fixed, explicitly typed columns plus free extra columns."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from soar.data.task import Task
from soar.execution.outcome import MAX_SIDE, CanonicalGrid, Failure, FailureKind, Output
from soar.scoring.program import ProgramScore, canonical

KINDS = ("sample", "refine", "replay")
GRIDS = pa.list_(pa.list_(pa.list_(pa.int8())))  # one grid per input; a NULL grid where that input failed

ARCHIVE_SCHEMA = pa.schema([
    pa.field("program_id", pa.string(), nullable=False),
    pa.field("task_id", pa.string(), nullable=False),
    pa.field("parent_id", pa.string()),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("iteration", pa.int32(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("code", pa.string(), nullable=False),
    pa.field("text", pa.string()),  # raw LLM answer
    pa.field("predicted_train_output", GRIDS, nullable=False),
    pa.field("predicted_test_output", GRIDS, nullable=False),
    pa.field("correct_train_input", pa.list_(pa.bool_()), nullable=False),
    pa.field("correct_test_input", pa.list_(pa.bool_())),  # null when the test outputs are unknown
    pa.field("train_acc", pa.float32(), nullable=False),
    pa.field("valid", pa.bool_(), nullable=False),
    pa.field("error", pa.string()),  # the first Failure as str, e.g. "timeout"
])
ARCHIVE_COLUMNS: tuple[str, ...] = tuple(ARCHIVE_SCHEMA.names)


def _grid_or_none(o: Output) -> list[list[int]] | None:
    return None if isinstance(o, Failure) else [list(row) for row in o]


def program_row(
    task: Task,
    code: str,
    outputs: Sequence[Output],
    score: ProgramScore,
    *,
    program_id: str,
    kind: str,
    iteration: int = 0,
    model: str = "",
    parent_id: str | None = None,
    text: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The archive row of one executed, scored program; `extra` adds columns of the caller's choice."""
    if kind not in KINDS:
        raise ValueError(f"unknown program kind {kind!r}; allowed: {', '.join(KINDS)}")
    clash = set(extra) & set(ARCHIVE_COLUMNS)
    if clash:
        raise ValueError(f"extra columns clash with archive columns: {sorted(clash)}")
    if len(outputs) != len(task.inputs):
        raise ValueError(f"task {task.id}: expected {len(task.inputs)} outputs, got {len(outputs)}")
    n_train = len(task.train)
    failure = next((o for o in outputs if isinstance(o, Failure)), None)
    return {
        "program_id": program_id,
        "task_id": task.id,
        "parent_id": parent_id,
        "kind": kind,
        "iteration": iteration,
        "model": model,
        "code": code,
        "text": text,
        "predicted_train_output": [_grid_or_none(o) for o in outputs[:n_train]],
        "predicted_test_output": [_grid_or_none(o) for o in outputs[n_train:]],
        "correct_train_input": list(score.correct_train),
        "correct_test_input": None if score.correct_test is None else list(score.correct_test),
        "train_acc": score.train_acc,
        "valid": score.valid,
        "error": None if failure is None else str(failure),
        **extra,
    }


def _parse_failure(error: str | None) -> Failure:
    """Invert Failure.__str__ ("kind: message"); unknown text becomes a CRASH carrying it."""
    if not error:
        return Failure(FailureKind.CRASH, "unrecorded failure")
    head, _, message = error.partition(": ")
    try:
        return Failure(FailureKind(head), message)
    except ValueError:
        return Failure(FailureKind.CRASH, error)


def _canonical_already(grid: CanonicalGrid) -> bool:
    """Whether a grid of int cells is in canonical form as it is (what soar writes always is): the judge's rule
    would return it unchanged, so it only runs on the others (to convert them or to raise)."""
    width = len(grid[0]) if grid else 0
    return (1 <= len(grid) <= MAX_SIDE and 1 <= width <= MAX_SIDE and all(len(row) == width for row in grid)
            and 0 <= min(map(min, grid)) and max(map(max, grid)) <= 9)


def row_outputs(row: Mapping[str, Any], seen: dict[Any, CanonicalGrid] | None = None) -> list[Output]:
    """A row's predictions back as executor Outputs (train then test). The archive keeps only the
    first failure's text, so every NULL grid comes back as that Failure. `seen`: a cache of grids already
    canonicalised, for the many rows of one task that repeat the same outputs; only for cells read from an integer
    column (the archive's int8): such a grid, once checked for shape and range, is its own canonical form."""
    failure = _parse_failure(row.get("error"))
    grids = list(row["predicted_train_output"]) + list(row["predicted_test_output"])
    if seen is None:
        return [failure if g is None else canonical(g) for g in grids]
    out: list[Output] = []
    for g in grids:
        if g is None:
            out.append(failure)
            continue
        key = tuple(map(tuple, g))
        if key not in seen:
            seen[key] = key if _canonical_already(key) else canonical(g)
        out.append(seen[key])
    return out


def solved(row: Mapping[str, Any]) -> bool:
    """An archived row whose program was right on every train and test pair (test outputs known)."""
    return row["train_acc"] == 1.0 and bool(row["correct_test_input"]) and all(row["correct_test_input"])
