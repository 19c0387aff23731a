"""The judge's rule: turn whatever a program returned into a canonical grid (h, w, cell bytes), or reject it.

The ARC rule decides every case: an output counts when its *value* is a grid of ints 0..9. Values are read
through the base types (list, tuple, ndarray, int, float), never through the object's own methods, so no
`__eq__`, `__iter__` or `__len__` of a program's class can make a wrong grid count or a right one fail.
Decisions, with SOAR's `result (ndarray -> .tolist()) == expected` (spec §5.1) where it differs:
- A grid is a list or tuple of rows, or a 2-D array; a row is a list or tuple of cells, or a 1-D array.
  Subclasses are read as their base type: np.matrix and other ndarray subclasses, a list subclass.
  Tuples of tuples and lists of numpy rows count (SOAR: a tuple never equals a list; a numpy row makes `==`
  raise). A masked array counts when no cell is masked (a masked cell has no value).
- A cell is an int or a bool (True = 1), a numpy integer or bool, a float or numpy float with an integral value
  (2.0 = 2, as SOAR's `[[2.0]] == [[2]]`), a 0-d array holding one of these, or an int or float subclass (read
  as int or float). Object-dtype arrays are read cell by cell with this rule (as SOAR's `.tolist()`).
- Rejected: any other cell (str, None, complex even with a zero imaginary part, Fraction, Decimal, an object
  with `__index__` or `__eq__`, a 1-element 1-D array: that value is 3-D), ragged rows, 0 or more than 40
  rows or columns (SOAR's validity check allows 40), values outside 0..9, non-integral floats, nan, inf.
This runs next to the untrusted program (in the child) and, through `soar.scoring.canonical`, on the
coordinator's side for expected grids: one rule for both sides of the comparison.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from soar.execution.outcome import MAX_SIDE


class InvalidOutput(Exception):
    pass


_PLAIN = frozenset({int, bool})
_NUMERIC = (
    _PLAIN | {float} | {t for t in set(np.sctypeDict.values()) if issubclass(t, (np.integer, np.bool_, np.floating))}
)


def canonicalise(out: Any) -> tuple[int, int, bytes]:
    if isinstance(out, np.ndarray):
        return _from_array(_base(out))
    rows = [_row(r) for r in _items(out, "expected a list of rows, got a")]
    if not 1 <= len(rows) <= MAX_SIDE:
        raise InvalidOutput(f"{len(rows)} rows")
    w = len(rows[0])
    if any(len(r) != w for r in rows):
        raise InvalidOutput("rows of different lengths")
    if not 1 <= w <= MAX_SIDE:
        raise InvalidOutput(f"rows of {w} cells")
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
        rows = [[_cell(c) for c in r] for r in rows]
    try:
        return _from_array(np.array(rows, dtype=np.float64))
    except OverflowError:
        raise InvalidOutput("value out of range") from None


def _items(x: Any, error: str) -> list[Any] | tuple[Any, ...]:
    """The items of a list or tuple (of a subclass: as stored, whatever its methods say)."""
    if type(x) is list or type(x) is tuple:
        return x
    if isinstance(x, list):
        return list(list.__iter__(x))
    if isinstance(x, tuple):
        return tuple(tuple.__iter__(x))
    raise InvalidOutput(f"{error} {type(x).__name__}")


def _row(row: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(row, np.ndarray):
        a = _base(row)
        if a.ndim != 1:
            raise InvalidOutput(f"a row is a {a.ndim}-D array")
        return a.tolist()  # Python scalars, or the objects of an object array
    return _items(row, "a row is a")


def _base(a: np.ndarray) -> np.ndarray:
    """An array as a plain ndarray (a view); a masked array only when nothing is masked."""
    if type(a) is np.ndarray:
        return a
    ma = sys.modules.get("numpy.ma")  # imported by whoever made a masked array
    if ma is not None and isinstance(a, ma.MaskedArray) and ma.getmaskarray(a).any():
        raise InvalidOutput("masked cells")
    return np.ndarray.view(a, np.ndarray)


def _cell(c: Any) -> Any:
    """A cell as a Python or numpy number, for the float64 conversion; anything else is rejected."""
    if type(c) in _NUMERIC:
        return c
    if isinstance(c, np.ndarray):
        a = _base(c)
        v = a.item() if a.ndim == 0 else None
        if type(v) in _NUMERIC:
            return v
        raise InvalidOutput(f"a cell is a {a.ndim}-D array" if a.ndim else f"a cell is a 0-d array of {a.dtype}")
    if isinstance(c, int):
        return int.__index__(c)
    if isinstance(c, float):
        return float.__float__(c)
    raise InvalidOutput(f"a cell is a {type(c).__name__}")


def _from_array(a: np.ndarray) -> tuple[int, int, bytes]:
    if a.ndim != 2:
        raise InvalidOutput(f"a {a.ndim}-D array")
    h, w = a.shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise InvalidOutput(f"shape {h}x{w}")
    kind = a.dtype.kind
    if kind == "O":
        return canonicalise(a.tolist())  # a list of rows of objects: each cell by the cell rule
    if kind in "biu":
        ok = bool(a.min() >= 0 and a.max() <= 9)
    elif kind == "f":
        ok = bool(((a >= 0) & (a <= 9) & (a == np.floor(a))).all())  # nan fails every comparison
    else:
        raise InvalidOutput(f"array of dtype {a.dtype}")
    if not ok:
        raise InvalidOutput("values outside 0..9 or not integral")
    return h, w, a.astype(np.uint8).tobytes()
