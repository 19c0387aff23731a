"""The judge's decisions at the edges (soar.execution.canonical), through the real executor and is_correct.

The ARC rule decides each case: an output is right when its value is the expected grid of ints 0..9."""

from __future__ import annotations

import pytest

from soar.execution import Executor, Failure, FailureKind
from soar.execution.canonical import InvalidOutput
from soar.scoring import canonical, is_correct

GRID = [[1, 2, 0], [0, 3, 4]]
EXPECTED = ((1, 2, 0), (0, 3, 4))
PRELUDE = """import numpy as np
from fractions import Fraction


class Sub(np.ndarray):
    pass


class L(list):
    def __iter__(self):  # read as a list: its own methods are not asked
        return iter([])

    def __len__(self):
        return 0


class T(tuple):
    pass


class I(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class Eq:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__

    def __index__(self):
        return 1

"""

# Outputs whose value is the expected grid: counted right.
RIGHT = {
    "list of lists": "grid",
    "tuple of tuples": "tuple(tuple(r) for r in grid)",  # SOAR's `==`: a tuple never equals a list
    "list of numpy rows": "[np.array(r) for r in grid]",  # SOAR's `==`: the comparison raises
    "integer array": "np.array(grid, dtype=np.int8)",
    "bool cells": "[[bool(v) for v in r] for r in [[1, 1, 0], [0, 1, 1]]]",
    "integral floats": "np.array(grid, dtype=float)",  # as SOAR: [[2.0]] == [[2]]
    "numpy scalar cells": "[[np.uint16(v) for v in r] for r in grid]",
    "object-dtype array": "np.array(grid, dtype=object)",
    "object array of numpy ints": "np.array([[np.int64(v) for v in r] for r in grid], dtype=object)",
    "np.matrix": "np.matrix(grid)",
    "ndarray subclass": "np.array(grid).view(Sub)",
    "masked array, nothing masked": "np.ma.masked_array(grid)",
    "0-d array cells": "[[np.array(v) for v in r] for r in grid]",
    "0-d object array cells": "[[np.array(v, dtype=object) for v in r] for r in grid]",
    "list subclass, read as a list": "L(L(r) for r in grid)",
    "tuple subclass rows": "[T(r) for r in grid]",
    "int subclass cells, read as ints": "[[I(v) for v in r] for r in grid]",
}
# Outputs whose value is not a grid of ints 0..9: invalid, never right.
WRONG = {
    "1-element arrays as cells (3-D)": "[[np.array([v]) for v in r] for r in grid]",
    "a 3-D array": "np.array(grid)[None]",
    "masked cells": "np.ma.masked_array(grid, mask=[[1, 0, 0], [0, 0, 0]])",
    "complex cells": "np.array(grid, dtype=complex)",
    "string cells": "[[str(v) for v in r] for r in grid]",
    "string array": "np.array(grid).astype(str)",
    "an object claiming equality": "np.array([[Eq()] * 3] * 2, dtype=object)",
    "Fraction cells": "[[Fraction(v) for v in r] for r in grid]",
    "non-integral float": "np.array(grid) + 0.5",
    "ragged object array": "np.array([[1, 2, 0], [0, 3]], dtype=object)",
}


@pytest.fixture(scope="module")
def outputs(executor: Executor) -> dict[str, Failure | tuple]:
    cases = {**RIGHT, **WRONG}
    outs = executor.run([(f"{PRELUDE}def transform(grid):\n    return {expr}\n", [GRID]) for expr in cases.values()])
    return {name: out for name, (out,) in zip(cases, outs, strict=True)}


@pytest.mark.parametrize("name", RIGHT)
def test_value_is_the_grid_counts(outputs, name):
    expected = ((1, 1, 0), (0, 1, 1)) if name == "bool cells" else EXPECTED
    out = outputs[name]
    assert out == expected, out
    assert is_correct(out, [list(r) for r in expected])


@pytest.mark.parametrize("name", WRONG)
def test_value_not_a_grid_is_invalid(outputs, name):
    out = outputs[name]
    assert isinstance(out, Failure) and out.kind == FailureKind.INVALID_OUTPUT, out
    assert not is_correct(out, GRID)


def test_is_correct_judges_values():
    """is_correct applies the same rule to both sides: any grid form of the right value counts."""
    assert is_correct(EXPECTED, GRID)
    assert is_correct([[1, 2, 0], [0, 3, 4]], EXPECTED)  # a raw list grid, as an output
    assert not is_correct(((1, 2, 0),), GRID)
    assert not is_correct([[1.5, 2, 0], [0, 3, 4]], GRID)  # not a grid: not right, no error
    assert not is_correct(Failure(FailureKind.EXCEPTION), GRID)
    assert canonical([[True, 2.0]]) == ((1, 2),)
    with pytest.raises(InvalidOutput, match="values outside 0..9 or not integral"):
        canonical([[1.5]])  # no silent int(): the same rule as a program's output
