"""Append-only, crash-safe program archive: a directory of parquet part files.

`<run_dir>/programs.parquet/` holds `part-000000.parquet`, `part-000001.parquet`, ... Each `append`
writes one part to a hidden temp name, fsyncs it and renames it into place (`soar.io.atomic_file`), so a batch is
either fully visible or absent; a run killed mid-write leaves only a hidden temp file, which readers
skip and the next `ProgramArchive` removes. Resume: skip programs whose id is in `program_ids()`.
One writer per name: a sharded search's shards write into the one archive under their own names
(`ProgramArchive(path, writer="s001")`: `part-s001-000000.parquet`, ...), each reading and resuming from its own
parts only, so two shards never write the same part file; the archive without a writer name reads every part.

The directory reads as one dataset elsewhere too: `pyarrow.dataset.dataset(path)` and
`pandas.read_parquet(path)` (both skip names starting with "."; both take the first part's schema,
so pass `schema=` to see extra columns added later, or use `read()`), and duckdb's
`read_parquet('programs.parquet/*.parquet', union_by_name=true)`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from soar.archive.schema import ARCHIVE_COLUMNS, ARCHIVE_SCHEMA
from soar.io import TMP_SUFFIX, atomic_file

_PART = "part-{:06d}.parquet"
_NAMED_PART = "part-{}-{:06d}.parquet"


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as a table: archive columns with their fixed types, then extra columns (inferred types)."""
    missing = [c for c in ARCHIVE_COLUMNS if any(c not in r for r in rows)]
    if missing:
        raise ValueError(f"rows lack archive column(s): {missing}")
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in ARCHIVE_SCHEMA.names))
    arrays = [pa.array([r[f.name] for r in rows], type=f.type) for f in ARCHIVE_SCHEMA]
    arrays += [pa.array([r.get(k) for r in rows]) for k in extra]
    fields = list(ARCHIVE_SCHEMA) + [pa.field(k, a.type) for k, a in zip(extra, arrays[len(ARCHIVE_SCHEMA):])]
    nulls = [f.name for f, a in zip(ARCHIVE_SCHEMA, arrays) if not f.nullable and a.null_count]
    if nulls:
        raise ValueError(f"null values in non-nullable archive column(s): {nulls}")
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def concat_parts(files: Sequence[Path], columns: Sequence[str] | None, empty: pa.Schema) -> pa.Table:
    """Concatenate parquet files, promoting schemas (a column absent from a part reads as nulls)."""
    schemas = [pq.read_schema(f) for f in files]
    if columns is not None:
        known = {n for s in schemas for n in s.names} | set(empty.names)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; available: {sorted(known)}")
    tables = [
        pq.read_table(f, columns=None if columns is None else [c for c in columns if c in s.names])
        for f, s in zip(files, schemas)
    ]
    if not tables:
        fields = [f for f in empty if columns is None or f.name in columns]
        return pa.schema(fields).empty_table()
    table = pa.concat_tables(tables, promote_options="permissive")
    if columns is not None:  # parts lacking a requested column: add it as nulls, keep the requested order
        for c in columns:
            if c not in table.column_names:
                f = empty.field(c) if c in empty.names else pa.field(c, pa.null())
                table = table.append_column(f.name, pa.nulls(len(table), f.type))
        table = table.select(list(columns))
    return table


def _writer_and_index(part: Path) -> tuple[str, int]:
    """("", 7) for part-000007.parquet; ("s002", 7) for part-s002-000007.parquet."""
    fields = part.stem.split("-")
    return ("" if len(fields) == 2 else fields[1]), int(fields[-1])


def committed_parts(path: Path, writer: str | None = None) -> list[Path]:
    """The committed part files of the archive at `path` (only `writer`'s, when given), in append order per writer
    (numeric, so part-1000000 follows part-999999), the unnamed writer first, then the named ones by name.
    Read-only: safe on another run's archive, even one still being written."""
    parts = sorted(Path(path).glob("part-*.parquet"), key=_writer_and_index)
    return parts if writer is None else [p for p in parts if _writer_and_index(p)[0] == writer]


class ProgramArchive:
    def __init__(self, path: str | Path, writer: str | None = None) -> None:
        if writer is not None and not writer.isalnum():
            raise ValueError(f"archive writer name {writer!r}: letters and digits only")
        self.path = Path(path)
        self.writer = writer
        self.path.mkdir(parents=True, exist_ok=True)
        # leftovers of this writer's writes killed before os.replace (other writers' may be in flight)
        for tmp in self.path.glob(f".part-{writer + '-' if writer else '[0-9]'}*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)

    def parts(self) -> list[Path]:
        """The parts this archive reads: every part, or only its writer's."""
        return committed_parts(self.path, self.writer)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write `rows` as one new part, atomically. An empty batch writes nothing."""
        if rows:
            self.append_table(rows_to_table(rows))

    def append_table(self, table: pa.Table) -> None:
        """Write an archive-schema table (extra columns allowed) as one new part, atomically."""
        if table.num_rows == 0:
            return
        if table.schema.names[:len(ARCHIVE_COLUMNS)] != list(ARCHIVE_COLUMNS):
            raise ValueError(f"table columns {table.schema.names[:len(ARCHIVE_COLUMNS)]} are not the archive's")
        mine = committed_parts(self.path, self.writer or "")
        index = _writer_and_index(mine[-1])[1] + 1 if mine else 0
        final = self.path / (_NAMED_PART.format(self.writer, index) if self.writer else _PART.format(index))
        with atomic_file(final, durable=True) as f:
            pq.write_table(table, f, compression="zstd")

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows, in append order; extra columns missing from some parts read as nulls."""
        return concat_parts(self.parts(), columns, ARCHIVE_SCHEMA)

    def column_names(self) -> list[str]:
        """The archive's columns, then every extra column some part has, in order of appearance."""
        names = dict.fromkeys(ARCHIVE_COLUMNS)
        for part in self.parts():
            names.update(dict.fromkeys(pq.read_schema(part).names))
        return list(names)

    def program_ids(self) -> set[str]:
        return set(self.read(["program_id"]).column("program_id").to_pylist())

    def __len__(self) -> int:
        return _rows(self.parts())


def _rows(parts: Sequence[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


def archived_rows(path: Path) -> int:
    """Rows in the committed parts of the archive at `path` (0 when there is none), from the parts' metadata.
    Read-only: safe while writers are appending."""
    return _rows(committed_parts(path))
