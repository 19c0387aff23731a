"""The `replay` model: programs come from a file (JSONL or parquet) instead of an LLM."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from soar.archive import ARCHIVE_COLUMNS, read_programs
from soar.data import Task


def load_replay_programs(path: Path, split: dict[str, Task], selected: set[str]) -> pa.Table:
    """The programs of `path` for the `selected` tasks, each with a stable `program_id`: the file's own when it has
    unique ones (another run's archive: its `kind` and `parent_id` lineage is kept too, so refinement data survives
    a replay), else the row number.

    Columns the archive computes itself (outputs, correctness, ...) are dropped; `model`, `text` and any other
    extra columns are kept. Task ids the split does not know are an error that lists them.
    """
    table = read_programs(path)
    unknown = sorted(set(table.column("task_id").to_pylist()) - set(split))
    if unknown:
        shown = ", ".join(unknown[:20]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 20 else "")
        raise ValueError(f"{path}: task ids not in the selected data split: {shown}")
    names = table.column_names
    lineage = "program_id" in names and pc.count_distinct(table.column("program_id")).as_py() == table.num_rows
    kept = ("task_id", "code", "model", "text") + (("program_id", "parent_id", "kind") if lineage else ())
    table = table.drop_columns([c for c in names if c in ARCHIVE_COLUMNS and c not in kept])
    if not lineage:
        table = table.append_column("program_id", pa.array([f"replay-{i:09d}" for i in range(table.num_rows)]))
    return table.filter(pc.is_in(table.column("task_id"), pa.array(sorted(selected))))
