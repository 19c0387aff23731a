"""Turn whatever a program returned into a canonical grid (h, w, cell bytes), or reject it.

Runs next to the untrusted program, so it trusts no method of the returned object: containers must be exactly
list, tuple or numpy.ndarray (no subclasses), cells exactly int, bool or a numpy integer/bool/float scalar.
Following SOAR (spec §5.2: a grid is valid when `np.array(out)` casts to int, and `[[1.0]] == [[1]]` when it
scores), float cells are accepted when integral (2.0 -> 2) and rejected otherwise (1.5, nan, inf). A grid is
1..40 x 1..40, rectangular, with values 0..9. Rows may be 1-D arrays; the grid may be a tuple of tuples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soar.execution.wire import MAX_SIDE


class InvalidOutput(Exception):
    pass


_PLAIN = frozenset({int, bool})
_NUMERIC = (
    _PLAIN | {float} | {t for t in set(np.sctypeDict.values()) if issubclass(t, (np.integer, np.bool_, np.floating))}
)


def canonicalise(out: Any) -> tuple[int, int, bytes]:
    if type(out) is np.ndarray:
        return _from_array(out)
    if type(out) is not list and type(out) is not tuple:
        raise InvalidOutput(f"expected a list of rows, got {type(out).__name__}")
    if not 1 <= len(out) <= MAX_SIDE:
        raise InvalidOutput(f"{len(out)} rows")
    rows = []
    for row in out:
        if type(row) is np.ndarray:
            if row.ndim != 1:
                raise InvalidOutput(f"a row is a {row.ndim}-D array")
        elif type(row) is not list and type(row) is not tuple:
            raise InvalidOutput(f"a row is a {type(row).__name__}")
        rows.append(row)
    w = len(rows[0])
    if any(len(r) != w for r in rows):
        raise InvalidOutput("rows of different lengths")
    if not 1 <= w <= MAX_SIDE:
        raise InvalidOutput(f"rows of {w} cells")
    rows = [r.tolist() if type(r) is np.ndarray else r for r in rows]
    types = set().union(*(map(type, r) for r in rows))
    if types <= _PLAIN:  # the common case, at C speed; bytes() rejects values outside 0..255
        try:
            cells = b"".join(map(bytes, rows))
        except ValueError:
            raise InvalidOutput("value out of range") from None
        if max(cells) > 9:
            raise InvalidOutput(f"value {max(cells)} out of range")
        return len(rows), w, cells
    if not types <= _NUMERIC:
        bad = next(t for t in types if t not in _NUMERIC)
        raise InvalidOutput(f"a cell is a {bad.__name__}")
    try:
        return _from_array(np.array(rows, dtype=np.float64))
    except OverflowError:
        raise InvalidOutput("value out of range") from None


def _from_array(a: np.ndarray) -> tuple[int, int, bytes]:
    if a.ndim != 2:
        raise InvalidOutput(f"a {a.ndim}-D array")
    h, w = a.shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise InvalidOutput(f"shape {h}x{w}")
    kind = a.dtype.kind
    if kind in "biu":
        ok = bool(a.min() >= 0 and a.max() <= 9)
    elif kind == "f":
        ok = bool(((a >= 0) & (a <= 9) & (a == np.floor(a))).all())  # nan fails every comparison
    else:
        raise InvalidOutput(f"array of dtype {a.dtype}")
    if not ok:
        raise InvalidOutput("values outside 0..9 or not integral")
    return h, w, a.astype(np.uint8).tobytes()
