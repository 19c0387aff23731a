"""SOAR's program filters (spec §7.2, soar.scoring.filters): valid grids, grid distances, each filter relative to
the task's true outputs, hard-coded outputs, and no read of the test ground truth."""
from __future__ import annotations

import numpy as np
import pytest
from hindsight_rows import (
    BIG,
    CONST,
    CRASH,
    FLIP_V,
    IDENT,
    ROT,
    SPLIT,
    TRANSPOSE,
    ZERO,
    Guarded,
    executed_rows,
    synth_row,
    synth_task,
)

from soar.archive import program_row
from soar.data import Pair, Task
from soar.scoring import canonical, score_program
from soar.scoring.filters import (
    FILTERS,
    grid_distance,
    hardcoded_output,
    keep_program,
    mean_pairwise_distance,
    valid_grid,
)


def test_valid_grid():
    assert valid_grid([[0, 9], [1, 2]]) and valid_grid([[5]]) and valid_grid([[1] * 40] * 40)
    for bad in ([], [[]], [[1, 2], [3]], [[1] * 41], [[1]] * 41, [[10]], [[-1]], [[True]], [[1.0]], "[[1]]", None):
        assert not valid_grid(bad), bad


def test_grid_distance():
    assert grid_distance([[1, 2]], [[1, 2]]) == 0.0
    assert grid_distance([[0, 0]], [[0, 0]]) == 0.0  # no non-zero cell
    assert grid_distance([[0, 1]], [[0, 2]]) == 1.0  # only the non-zero cell counts
    assert grid_distance([[1, 0], [0, 0]], [[1, 3], [0, 0]]) == 0.5
    assert grid_distance([[1]], [[1, 0]]) == 0.5  # padding (-1) is non-zero and differs from 0
    assert grid_distance([[1]], [[1], [1]]) == 0.5


def test_mean_pairwise_distance_matches_pairwise_grid_distance():
    r = np.random.default_rng(0)
    for _ in range(20):
        grids = [r.integers(0, 4, size=tuple(r.integers(1, 6, size=2))).tolist() for _ in range(int(r.integers(2, 6)))]
        expect = np.mean([grid_distance(a, b) for k, a in enumerate(grids) for b in grids[k + 1:]])
        assert mean_pairwise_distance(grids) == pytest.approx(expect)
    assert mean_pairwise_distance([[[1]]]) is None
    assert valid_grid([[np.int8(3), np.int64(0)]]) and not valid_grid([[np.float32(1.0)]])


def test_filters_on_real_programs(executor):
    task = SPLIT["6150a2bd"]
    codes = [ROT, FLIP_V, IDENT, CRASH, BIG, CONST, ZERO, TRANSPOSE]
    verdicts = [keep_program(r, task) for r in executed_rows(executor, task, codes)]
    assert verdicts == [None, None, "identity", "invalid_grid", "invalid_grid", "near_constant", "all_background",
                        None]
    assert set(verdicts) - {None} <= set(FILTERS)


def test_filter_rejects_invalid_grid_in_row_without_failure():
    task = synth_task()
    row = synth_row(task, "a", [True] * 4)
    row["predicted_test_output"] = [[[1] * 41] * 3]  # a grid the executor would not have produced
    assert keep_program(row, task) == "invalid_grid"
    row["predicted_test_output"] = [None]
    assert keep_program(row, task) == "invalid_grid"
    row["predicted_test_output"] = []
    with pytest.raises(ValueError, match="outputs"):
        keep_program(row, task)


def test_all_background_exception_when_a_true_train_output_is_all_zero():
    base = synth_task(seed=3)
    zero_out = Task("z", (Pair(base.train[0].input, [[0, 0, 0]] * 3),) + base.train[1:], base.test)
    row = synth_row(base, "a", [False, True, True, True], [False])
    row["predicted_test_output"] = [[[0, 0, 0]] * 3]
    assert keep_program(row, base) == "all_background"
    assert keep_program(row, zero_out) is None
    # real task 239be575 has [[0]] train outputs: a correct program (test output 2 is [[0]]) is kept
    real = SPLIT["239be575"]
    outs = [canonical(p.output) for p in real.train] + [((0,),), ((0,),)]
    r = program_row(real, "def transform(grid):\n    return f(grid)", outs, score_program(real, outs),
                    program_id="x", kind="sample")
    assert keep_program(r, real) is None


def test_near_constant_relative_to_true_spread():
    task = synth_task(seed=4)
    row = synth_row(task, "a", [False] * 4, [False])
    same = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    row["predicted_train_output"] = [same] * 4
    assert keep_program(row, task) == "near_constant"
    const_task = Task("c", tuple(Pair(p.input, same) for p in task.train), task.test)  # the truth is constant too
    assert keep_program(row, const_task) is None
    one_pair = Task("o", task.train[:1], task.test)  # a single train pair: no pairwise distance, no filter
    row1 = dict(row, predicted_train_output=[same], correct_train_input=[False])
    assert keep_program(row1, one_pair) is None


def test_identity_relative_to_true_identity_rate():
    task = synth_task(seed=5)
    row = synth_row(task, "a", [False] * 4, [False])
    wrong = list(row["predicted_train_output"])

    def copying(n):  # the first n predictions are the inputs themselves
        return dict(row, predicted_train_output=[p.input for p in task.train[:n]] + wrong[n:])
    assert keep_program(copying(2), task) == "identity"  # 0.5 > 0.3
    assert keep_program(copying(1), task) is None  # 0.25 <= 0.3
    half_id = Task("h", tuple(Pair(p.input, p.input if i < 2 else p.output) for i, p in enumerate(task.train)),
                   task.test)
    assert keep_program(copying(2), half_id) is None  # 0.5 is not above the truth's 0.5
    assert keep_program(copying(3), half_id) == "identity"


def test_long_line_and_hardcoded_output():
    task = synth_task(seed=6)
    row = synth_row(task, "a", [True] * 4, [True])
    assert keep_program(row, task) is None
    assert keep_program(dict(row, code="def transform(grid):\n    x = '" + "a" * 200 + "'"), task) == "long_line"
    out = row["predicted_train_output"][1]
    literal = "def transform(grid):\n    return " + repr([list(r) for r in out])
    assert keep_program(dict(row, code=literal), task) == "hardcoded_output"
    flat = [v for r in out for v in r]
    reshaped = f"def transform(grid):\n    return np.array({flat!r}).reshape(3, 3).tolist()"
    assert keep_program(dict(row, code=reshaped), task) == "hardcoded_output"  # brackets stripped
    test_lit = "def transform(grid):\n    return " + repr([list(r) for r in row["predicted_test_output"][0]])
    assert keep_program(dict(row, code=test_lit), task) == "hardcoded_output"  # test outputs count too


def test_hardcoded_output_1x1_exception():
    plain = synth_task(seed=7)
    with_1x1 = Task("one", plain.train[:3] + (Pair(plain.train[3].input, [[5]]),), plain.test)
    grid = [[1, 2], [3, 4]]
    flat_code = "x = np.array([1, 2, 3, 4]).reshape(2, 2)"
    assert hardcoded_output(flat_code, [grid], plain)  # brackets stripped: "1,2,3,4" found
    assert not hardcoded_output(flat_code, [grid], with_1x1)  # 1x1 task: brackets kept
    assert hardcoded_output("return [[1, 2],\n [3, 4]]", [grid], with_1x1)  # the literal grid is still caught
    # a 1x1 prediction: its bare digit is in almost any code, so only "[[5]]" counts
    assert not hardcoded_output("return 5 if a else 3", [[[5]]], plain)
    assert hardcoded_output("return [[5]]", [[[5]]], plain)
    # real task d631b094 has 1x1 train outputs; a correct colour-counting program is kept
    task = SPLIT["d631b094"]
    code = "def transform(grid):\n    cells = [v for r in grid for v in r if v != 0]\n    return [[cells[0]] * len(cells)]"
    outs = [canonical(p.output) for p in task.train + task.test]
    row = program_row(task, code, outs, score_program(task, outs), program_id="x", kind="sample")
    assert all(row["correct_train_input"]) and keep_program(row, task) is None


def test_filters_never_read_test_ground_truth():
    task = synth_task(seed=8)
    hidden = Task(task.id, task.train, tuple(Pair(p.input, None) for p in task.test))
    row = Guarded(synth_row(task, "a", [True, False, True, False], [True]))
    assert keep_program(row, hidden) is None
