"""Rows with equal outputs, found in Arrow without unpacking a grid: a paper-size archive holds millions of programs
but far fewer distinct output sets, and unpacking nested grids into Python objects is what costs.

Arrow cannot hash nested lists, so each grid column is seen as three flat byte strings per row, which together
determine its value exactly: the cells in order, the number of rows of each grid (-1 for a failed input: a NULL
grid), and the length of each grid row. Equal rows are those equal in every such string and in the other columns
asked for (task id, error text). A row holding a NULL grid row or cell (soar never writes one; an outside dataset
might) is never merged with another.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths, dtype=np.int64)])


def _binary(data: np.ndarray, starts: np.ndarray) -> pa.Array:
    """One large_binary value per row: bytes starts[i]..starts[i+1] of `data` (zero-copy over numpy buffers)."""
    raw = np.ascontiguousarray(data).view(np.uint8)
    offsets = starts.astype(np.int64) * data.itemsize
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(starts) - 1,
                                            [None, pa.py_buffer(offsets), pa.py_buffer(raw)])


def _lengths(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Each list's length (-1 for NULL) and how many children it spans (0 for NULL)."""
    length = pc.list_value_length(array).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return length, np.maximum(length, 0)


def _nulls_within(nulls: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per output row, whether any of its items (its span `at[i]..at[i+1]` of `nulls`) is NULL."""
    counts = _offsets(nulls.astype(np.int64))
    return counts[at[1:]] > counts[at[:-1]]


def _grid_parts(chunk: pa.Array) -> tuple[list[pa.Array], np.ndarray]:
    """The three byte strings per row of a chunk of list<grid> (module doc), and which rows hold a NULL grid row or
    cell (never written by soar, possible in an outside dataset): those are never merged."""
    n_grids = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
    grids = chunk.flatten()
    grid_rows, grid_spans = _lengths(grids)
    rows = grids.flatten()
    row_cells, row_spans = _lengths(rows)
    cells = rows.flatten()
    grid_at = _offsets(n_grids)  # per output row: its first grid
    row_at = _offsets(grid_spans)[grid_at]  # its first grid row
    cell_at = _offsets(row_spans)[row_at]  # its first cell
    alone = np.zeros(len(chunk), bool)
    if rows.null_count:
        alone |= _nulls_within(rows.is_null().to_numpy(zero_copy_only=False), row_at)
    if cells.null_count:
        alone |= _nulls_within(cells.is_null().to_numpy(zero_copy_only=False), cell_at)
        cells = cells.fill_null(0)
    values = cells.to_numpy(zero_copy_only=False)
    return [_binary(values, cell_at), _binary(grid_rows, grid_at), _binary(row_cells, row_at)], alone


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Per row, the index of its value among the column's distinct values (NULL is a value of its own)."""
    index = pc.index_in(column, value_set=pc.unique(column).drop_null())
    return index.fill_null(-1).to_numpy().astype(np.int64)


def output_groups(table: pa.Table, grids: Sequence[str], others: Sequence[str] = ()) -> np.ndarray:
    """Per row of `table`, a group number: rows share one exactly when they are equal in every grid column of
    `grids` (list<list<list<int>>>, as the archive's predicted outputs) and every column of `others`."""
    parts = [_codes(table.column(name)) for name in others]
    for name in grids:
        strings: list[list[pa.Array]] = [[], [], []]
        alone = np.full(table.num_rows, -1, np.int64)  # rows never merged: their own row number
        start = 0
        for chunk in table.column(name).chunks:
            got, alone_here = _grid_parts(chunk)
            alone[start:start + len(chunk)][alone_here] = np.flatnonzero(alone_here) + start
            for k in range(3):
                strings[k].append(got[k])
            start += len(chunk)
        parts += [_codes(pa.chunked_array(s, pa.large_binary())) for s in strings] + [alone]
    group = np.zeros(table.num_rows, np.int64)
    for codes in parts:  # combine one column at a time, renumbering densely so the numbers never overflow
        group = np.unique(group * (int(codes.max(initial=-1)) + 2) + codes + 1, return_inverse=True)[1]
    return group.reshape(-1)
