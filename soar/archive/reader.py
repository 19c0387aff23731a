"""Read program tables from outside sources: JSONL, a parquet file, or a directory of parquet files
(our archive, or a downloaded dataset such as SOAR's released `soar_arc_train_5M`)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from soar.archive.archive import concat_parts

REQUIRED = ("task_id", "code")
_JSONL = (".jsonl", ".ndjson", ".json")


def _parquet_files(directory: Path) -> list[Path]:
    """Every *.parquet below `directory`, skipping hidden/underscore names (temp files, _SUCCESS...)."""
    files = sorted(
        p for p in directory.rglob("*.parquet")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(directory).parts)
    )
    if not files:
        raise ValueError("directory holds no .parquet files")
    return files


def _check(path: Path, names: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(names)}")


def read_programs(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Programs from `path`: JSONL (one object per line), a parquet file, or a directory of parquet files
    (parts concatenated with schema promotion). Must hold `task_id` and `code`; other columns are kept
    as stored (e.g. SOAR's predicted_*_output as list<list<list<int64>>>). `columns` limits what is read
    (task_id and code are always included)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no programs at {path}")
    wanted = list(dict.fromkeys([*REQUIRED, *(columns or [])]))
    try:
        if path.suffix in _JSONL and path.is_file():
            table = pajson.read_json(path)
            _check(path, table.column_names, wanted)
            return table if columns is None else table.select(wanted)
        if path.is_dir():
            files = _parquet_files(path)
        elif path.suffix == ".parquet":
            files = [path]
        else:
            raise ValueError(f"unsupported format {path.suffix!r}; use .parquet, a directory, or {'/'.join(_JSONL)}")
        _check(path, list(dict.fromkeys(n for f in files for n in pq.read_schema(f).names)), wanted)
        return concat_parts(files, None if columns is None else wanted, pa.schema([]))
    except (pa.ArrowException, OSError) as e:  # a missing column is a plain ValueError: not rewrapped
        raise ValueError(f"cannot read programs from {path}: {e}") from e


class TaskRows:
    """The archive's rows of each known task, as Python dicts one task at a time (a paper-scale archive holds
    millions of programs: only one task's rows are ever unpacked, and the table is never copied: rows are taken by
    index). Archive order is kept within a task."""

    def __init__(self, table: pa.Table, tasks: Iterable[str]) -> None:
        self.table = table
        ids = table.column("task_id")
        known = pc.indices_nonzero(pc.is_in(ids, pa.array(sorted(set(tasks)), pa.string())))
        self.order = known.take(pc.array_sort_indices(ids.take(known)))  # a stable sort: archive order per task
        self.spans: dict[str, tuple[int, int]] = {}  # task id -> (first position in `order`, number of rows)
        for i, tid in enumerate(ids.take(self.order).to_pylist()):
            first, _ = self.spans.get(tid, (i, 0))
            self.spans[tid] = (first, i + 1 - first)

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def num_rows(self) -> int:
        """Rows of known tasks."""
        return len(self.order)

    def __iter__(self) -> Iterator[str]:
        return iter(self.spans)  # sorted task ids

    def __getitem__(self, tid: str) -> list[dict[str, Any]]:
        first, n = self.spans[tid]
        return self.table.take(self.order.slice(first, n)).to_pylist()
