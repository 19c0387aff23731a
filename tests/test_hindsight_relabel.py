"""Hindsight relabelling and output dedup (spec §7.1, §7.3-7.4, soar.hindsight.relabel): a relabelled task makes
the program correct; failed programs are refused; dedup keeps the first of each distinct output tuple."""
from __future__ import annotations

import pytest
from hindsight_rows import (
    CRASH,
    FLIP_H,
    FLIP_V,
    ROT,
    SPLIT,
    TRANSPOSE,
    executed_rows,
    synth_row,
    synth_task,
)

from soar.archive import row_outputs
from soar.hindsight.relabel import dedup_by_output, relabel
from soar.scoring import score_program


@pytest.mark.parametrize("tid, code", [("6150a2bd", FLIP_V), ("6150a2bd", TRANSPOSE), ("25ff71a9", FLIP_H),
                                       ("3c9b0459", ROT)])
def test_relabel_makes_the_program_correct(executor, tid, code):
    task = SPLIT[tid]
    row = executed_rows(executor, task, [code])[0]
    new = relabel(task, row)
    assert new.id == task.id and new.inputs == task.inputs
    score = score_program(new, row_outputs(row))
    assert all(score.correct_train) and score.correct_test == [True] * len(task.test) and score.train_acc == 1.0
    if code == ROT:  # already correct: relabelling gives the original task back
        assert new == task


def test_relabel_refuses_failed_programs(executor):
    task = SPLIT["6150a2bd"]
    with pytest.raises(ValueError, match="failed"):
        relabel(task, executed_rows(executor, task, [CRASH])[0])


def test_dedup_by_output_keeps_first_of_each_distinct_output_tuple():
    task = synth_task(seed=9)
    a = synth_row(task, "a", [True, False, False, False], [False], wrong=1)
    b = synth_row(task, "b", [True, False, False, False], [False], wrong=1, code="def transform(grid):\n    return b")
    c = dict(a, program_id="c", predicted_test_output=[[[1, 1, 1]] * 3])  # differs on the test output only
    d = synth_row(task, "d", [False] * 4, [False], wrong=2)
    assert a["predicted_train_output"] == b["predicted_train_output"] and a["code"] != b["code"]
    kept = dedup_by_output([a, b, c, d, b])
    assert [r["program_id"] for r in kept] == ["a", "c", "d"]
    assert dedup_by_output([]) == []
