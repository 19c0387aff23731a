"""Read program tables from outside sources: JSONL, a parquet file, or a directory of parquet files
(our archive, or a downloaded dataset such as SOAR's released `soar_arc_train_5M`)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from soar.archive.archive import concat_parts
from soar.archive.groups import output_groups
from soar.archive.schema import row_outputs
from soar.scoring.programs import Programs

REQUIRED = ("task_id", "code")
OUTPUT_COLUMNS = ("predicted_train_output", "predicted_test_output")
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
    """The archive's rows of each known task, one task at a time, in archive order within a task. A paper-scale
    archive holds millions of programs in hundreds of parts; rows are unpacked one task at a time, and the table is
    never copied whole. Rows are gathered a batch of consecutive tasks at a time (about `batch_rows` rows), part by
    part: a take on the whole many-part table costs a pass over all of it, so one take per task would cost minutes."""

    def __init__(self, table: pa.Table, tasks: Iterable[str], batch_rows: int = 1 << 17) -> None:
        self.table, self.batch_rows = table, batch_rows
        ids = table.column("task_id")
        known = pc.indices_nonzero(pc.is_in(ids, pa.array(sorted(set(tasks)), pa.string())))
        self.order = known.take(pc.array_sort_indices(ids.take(known)))  # a stable sort: archive order per task
        self.spans: dict[str, tuple[int, int]] = {}  # task id -> (first position in `order`, number of rows)
        for i, tid in enumerate(ids.take(self.order).to_pylist()):
            first, _ = self.spans.get(tid, (i, 0))
            self.spans[tid] = (first, i + 1 - first)
        self._rows = self.order.to_numpy().astype(np.int64)  # per position: its row in the table
        self._parts = table.to_batches()  # one record batch per archive part, as read
        self._part_starts = np.cumsum([0] + [len(b) for b in self._parts])
        self._ends = np.array([first + n for first, n in self.spans.values()], np.int64)  # ascending
        self._batch = (0, 0)  # the positions start..stop that the caches below hold
        self._table = table.schema.empty_table()  # rows() of the batch
        self._lists: dict[str, list[Any]] = {}  # column() of the batch
        self._firsts: tuple[np.ndarray, list[dict[str, Any]]] | None = None  # programs(): each outputs' first row

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def num_rows(self) -> int:
        """Rows of known tasks."""
        return len(self.order)

    def __iter__(self) -> Iterator[str]:
        return iter(self.spans)  # sorted task ids

    def _span(self, tid: str) -> tuple[int, int]:
        """The task's positions first..first+n, with the batch that holds them loaded (caches reset)."""
        first, n = self.spans[tid]
        start, stop = self._batch
        if not start <= first < first + n <= stop:  # this task and the next ones, up to batch_rows rows
            stop = int(self._ends[np.searchsorted(self._ends, first + max(n, self.batch_rows), "right") - 1])
            self._batch, self._lists, self._firsts = (first, stop), {}, None
            self._table = self.table.schema.empty_table()
        return first, n

    def _gather(self, positions: np.ndarray, columns: Sequence[str]) -> tuple[pa.Table, list[int]]:
        """The rows at `positions`, taken part by part, as a table in part order, and where each position's row is
        in it."""
        rows = self._rows[positions]
        part = np.searchsorted(self._part_starts, rows, "right") - 1
        by_part = np.argsort(part, kind="stable")
        cuts = np.flatnonzero(np.diff(part[by_part])) + 1
        pieces = [self._parts[part[ix[0]]].select(columns).take(pa.array(rows[ix] - self._part_starts[part[ix[0]]]))
                  for ix in np.split(by_part, cuts) if len(ix)]
        back = np.empty_like(by_part)
        back[by_part] = np.arange(len(by_part))
        return pa.Table.from_batches(pieces, pa.schema([self.table.schema.field(c) for c in columns])), back.tolist()

    def rows(self, tid: str) -> pa.Table:
        """The task's rows as a table."""
        first, n = self._span(tid)
        start, stop = self._batch
        if not self._table.num_rows:
            taken, back = self._gather(np.arange(start, stop), self.table.column_names)
            self._table = taken.combine_chunks().take(pa.array(back))
        return self._table.slice(first - start, n)

    def __getitem__(self, tid: str) -> list[dict[str, Any]]:
        return self.rows(tid).to_pylist()

    def column(self, tid: str, name: str) -> list[Any]:
        """One column of the task's rows, as Python values (put in order in Python: cheaper than Arrow's take)."""
        first, n = self._span(tid)
        start, stop = self._batch
        if name not in self._lists:
            taken, back = self._gather(np.arange(start, stop), [name])
            values = taken.column(name).to_pylist()
            self._lists[name] = [values[i] for i in back]
        return self._lists[name][first - start : first - start + n]

    @cached_property
    def _groups(self) -> np.ndarray:
        """Per position: its row's group of equal outputs (soar.archive.groups), over every task at once."""
        return output_groups(self.table, OUTPUT_COLUMNS, ["task_id", "error"])[self._rows]

    @cached_property
    def _int_cells(self) -> bool:
        """Whether the grid columns hold integer cells (the archive's int8), so row_outputs may cache by value."""
        cells = [self.table.schema.field(c).type.value_type.value_type.value_type for c in OUTPUT_COLUMNS]
        return all(map(pa.types.is_integer, cells))

    def programs(self, tid: str) -> Programs:
        """The task's programs grouped by outputs: each distinct set of outputs is unpacked from Arrow once, from the
        first row that has it (a search's duplicates are never turned into Python objects)."""
        first, n = self._span(tid)
        start, stop = self._batch
        if self._firsts is None:  # the first row of each group in the batch, in position order
            _, where = np.unique(self._groups[start:stop], return_index=True)
            firsts = np.sort(where) + start
            taken, back = self._gather(firsts, [*OUTPUT_COLUMNS, "error"])
            rows = taken.to_pylist()
            self._firsts = firsts, [rows[i] for i in back]
        firsts, rows = self._firsts
        lo, hi = np.searchsorted(firsts, [first, first + n])  # the task's groups, in first-seen order
        groups = self._groups[firsts[lo:hi]]
        sorter = np.argsort(groups)
        behaviour = sorter[np.searchsorted(groups, self._groups[first:first + n], sorter=sorter)]
        seen: dict | None = {} if self._int_cells else None  # the task's distinct grids, canonicalised once
        outputs = [tuple(row_outputs(row, seen)) for row in rows[lo:hi]]
        return Programs(self.column(tid, "code"), behaviour.tolist(), outputs)
