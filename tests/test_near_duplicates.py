"""Near-duplicate programs (soar.hindsight.near_duplicates) and code dedup before selection: programs that differ in
comments, docstrings, formatting, type hints or the names they bind share a key and behave the same under the real
executor; programs that differ in what they compute do not; dedup keeps the shortest of each group."""
from __future__ import annotations

import pytest
from hindsight_rows import SPLIT, executed_rows, synth_row, synth_task

from soar.archive.archive import rows_to_table
from soar.hindsight.examples import build_examples, data_options
from soar.hindsight.near_duplicates import normalised_code
from soar.hindsight.relabel import dedup_by_code

ROTATE = [  # three pairs of near-duplicates: two programs per text
    "def transform(grid):\n    return [row[::-1] for row in grid[::-1]]",
    'def transform(grid: list[list[int]]) -> list[list[int]]:\n    """Rotate 180."""\n'
    "    # reverse the rows, then each row\n    return [r[::-1]   for r in grid[::-1]]\n",
    "def transform(g):\n    out = [x[::-1] for x in g[::-1]]\n    return out",
    "def transform(grid):\n    result = [line[::-1] for line in grid[::-1]]\n    return result  # done",
    "def flip(rows):\n    'helper'\n    return [r[::-1] for r in rows[::-1]]\n\n\ndef transform(grid):\n    return flip(grid)",
    "def turn(a):\n    return [b[::-1] for b in a[::-1]]\ndef transform(grid):\n    return turn(grid)",
]
OTHERS = [
    "def transform(grid):\n    return [row[::-1] for row in grid]",  # flip horizontal: another computation
    "def transform(grid):\n    return [row[::-1] for row in grid[::-1]][::-1]",
    "def transform(grid):\n    return [list(row) for row in zip(*grid)]",
    "def transform(grid):\n    return [[len(grid)] * len(row) for row in grid]",  # free names (builtins) are kept
    "def transform(grid):\n    return [[max(row)] * len(row) for row in grid]",
]


def test_near_duplicates_share_a_key_and_behave_the_same(executor):
    pairs = [{normalised_code(c) for c in ROTATE[i:i + 2]} for i in (0, 2, 4)]
    assert [len(p) for p in pairs] == [1, 1, 1]
    keys = set.union(*pairs)
    assert len(keys) == 3  # a named result or a helper function is another text, even when it computes the same
    assert len({normalised_code(c) for c in OTHERS} | keys) == len(OTHERS) + 3
    task = SPLIT["6150a2bd"]
    rows = executed_rows(executor, task, ROTATE)
    assert all(r["train_acc"] == 1.0 for r in rows)
    assert len({str(r["predicted_train_output"]) + str(r["predicted_test_output"]) for r in rows}) == 1


@pytest.mark.parametrize("code", ["def transform(grid:\n    return", "", "x = 'unterminated", "\0"])
def test_code_that_does_not_parse_keys_as_itself(code):
    assert normalised_code(code) == code.strip()


def test_string_statements_and_bound_names_only():
    key = normalised_code('def transform(grid):\n    "only a docstring"\n')
    assert key == "def transform(v0):\n    pass"
    # a string that is a value is kept; attributes and keywords keep their names; imports are free names
    key = normalised_code("import math\ndef transform(grid):\n    s = 'abc'\n    return sorted(grid, key=len).copy()")
    assert "'abc'" in key and "key=len" in key and ".copy()" in key and "math" in key


def test_dedup_by_code_exact_and_near_keeps_the_shortest():
    task = synth_task(seed=3)
    rows = [synth_row(task, f"r{i}", [True] * 4, code=c) for i, c in enumerate(ROTATE + OTHERS)]
    rows.append(synth_row(task, "again", [True] * 4, code="  " + ROTATE[0] + "\n"))
    exact = dedup_by_code(rows)
    assert [r["program_id"] for r in exact] == [f"r{i}" for i in range(len(ROTATE + OTHERS))]
    near = dedup_by_code(rows, normalise=True)
    assert [r["code"] for r in near] == [min(ROTATE[i:i + 2], key=len) for i in (0, 2, 4)] + OTHERS


def test_dedup_code_option_in_the_data_build():
    assert data_options({"dedup_code": True})["dedup_code"] == "exact"
    assert data_options({"dedup_code": "normalised"})["dedup_code"] == "normalised"
    assert data_options({})["dedup_code"] is False
    with pytest.raises(ValueError, match="dedup_code='embedding': allowed: false, exact, normalised"):
        data_options({"dedup_code": "embedding"})
    task = synth_task("nd", seed=4)
    table = rows_to_table([synth_row(task, f"r{i}", [True] * 4, [True], code=c) for i, c in enumerate(ROTATE)])
    base = {"use_test": True, "mode": "sample", "sample_selection": "uniform", "per_task": 50}
    counts = {}
    for dedup in (False, "exact", "normalised"):
        exs, stats = build_examples(table, {"nd": task}, {**base, "dedup_code": dedup})
        counts[dedup] = (len(exs), stats["sample"]["code_duplicates"])
    assert counts == {False: (6, 0), "exact": (6, 0), "normalised": (3, 3)}
