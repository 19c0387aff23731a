"""Hindsight learning data (spec §7-§10): filters, relabelling, output dedup, sampling / refinement selection,
example building, test-time (no ground truth) safety and determinism."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from soar.archive import ProgramArchive, program_row, row_outputs
from soar.archive.archive import rows_to_table
from soar.data import Pair, Task, load_split
from soar.execution import Executor
from soar.hindsight import (
    FILTERS,
    MODES,
    REFINE_SELECTIONS,
    SAMPLE_SELECTIONS,
    Example,
    build_examples,
    dedup_by_output,
    diverse_pool,
    grid_distance,
    greedy_diverse,
    keep_program,
    majority_vote_half,
    mean_pairwise_distance,
    rank_greedy,
    refine_example,
    relabel,
    sample_example,
    select_refinement,
    select_sampling,
    valid_grid,
)
from soar.scoring.filters import hardcoded_output
from soar.prompts import format_grid, refinement_messages, sampling_messages
from soar.scoring import canonical, score_program

SPLIT = load_split("arc_agi_1", "training")
ROT = "def transform(grid):\n    return [row[::-1] for row in grid[::-1]]"  # 6150a2bd and 3c9b0459: rotate 180
ROT_LONG = 'def transform(grid):\n    """Rotate by 180 degrees."""\n    return [list(reversed(r)) for r in reversed(grid)]'
FLIP_V = "def transform(grid):\n    return grid[::-1]"
FLIP_H = "def transform(grid):\n    return [row[::-1] for row in grid]"
TRANSPOSE = "def transform(grid):\n    return [list(r) for r in zip(*grid)]"
IDENT = "def transform(grid):\n    return grid"
CRASH = "def transform(grid):\n    return 1 / 0"
ZERO = "def transform(grid):\n    return [[0 for _ in row] for row in grid]"
CONST = "def transform(grid):\n    return [[1, 2], [3, 4]]"
BIG = "def transform(grid):\n    return [[1] * 41 for _ in range(41)]"


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=1, timeout_s=1.0) as ex:
        yield ex


def run(executor, task: Task, codes: list[str], prefix: str = "p", **kw) -> list[dict]:
    results = executor.run([(code, task.inputs) for code in codes])
    return [program_row(task, code, outs, score_program(task, outs), program_id=f"{prefix}{i}",
                        kind=kw.get("kind", "sample"), **{k: v for k, v in kw.items() if k != "kind"})
            for i, (code, outs) in enumerate(zip(codes, results))]


# ---------------------------------------------------------------- synthetic tasks with controlled correctness

def synth_task(tid: str = "synth", n_train: int = 4, n_test: int = 1, seed: int = 0, hide_test: bool = False) -> Task:
    r = np.random.default_rng(seed)

    def g():
        return r.integers(1, 10, size=(3, 3)).tolist()
    return Task(tid, tuple(Pair(g(), g()) for _ in range(n_train)),
                tuple(Pair(g(), None if hide_test else g()) for _ in range(n_test)))


_counter = iter(range(10**6))


def synth_row(task: Task, pid: str, train_ok, test_ok=None, *, wrong: int = 0, code: str | None = None,
              kind: str = "sample", parent_id: str | None = None, model: str = "m", iteration: int = 0) -> dict:
    """A program right exactly on the pairs flagged; wrong outputs are random non-zero grids seeded by `wrong`, so
    two rows with the same `wrong` and flags have the same outputs."""
    r = np.random.default_rng(1000 + wrong)

    def bad():
        return canonical(r.integers(1, 10, size=(3, 3)).tolist())
    test_ok = [all(train_ok)] * len(task.test) if test_ok is None else test_ok
    outs = [canonical(p.output) if ok else bad() for p, ok in zip(task.train, train_ok)]
    outs += [canonical(p.output) if ok and p.output is not None else bad() for p, ok in zip(task.test, test_ok)]
    code = code or f"def transform(grid):\n    return program_{next(_counter)}(grid)"
    return program_row(task, code, outs, score_program(task, outs), program_id=pid, kind=kind, parent_id=parent_id,
                       model=model, iteration=iteration)


class Guarded(dict):
    """A row that fails the test if anything reads its ground-truth test correctness."""

    def __getitem__(self, key):
        assert key != "correct_test_input", "correct_test_input was read"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key != "correct_test_input", "correct_test_input was read"
        return super().get(key, default)


def cfg(**kw):
    return {"use_test": True, "mode": "sample", "sample_selection": "greedy_diverse", "refine_selection": "diverse",
            "per_task": 50, "refine_per_task": 50, "dedup_code": False, "shuffle_pairs": False, **kw}


# ---------------------------------------------------------------- filters

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
    verdicts = [keep_program(r, task) for r in run(executor, task, codes)]
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


# ---------------------------------------------------------------- relabelling and dedup

@pytest.mark.parametrize("tid, code", [("6150a2bd", FLIP_V), ("6150a2bd", TRANSPOSE), ("25ff71a9", FLIP_H),
                                       ("3c9b0459", ROT)])
def test_relabel_makes_the_program_correct(executor, tid, code):
    task = SPLIT[tid]
    row = run(executor, task, [code])[0]
    new = relabel(task, row)
    assert new.id == task.id and new.inputs == task.inputs
    score = score_program(new, row_outputs(row))
    assert all(score.correct_train) and score.correct_test == [True] * len(task.test) and score.train_acc == 1.0
    if code == ROT:  # already correct: relabelling gives the original task back
        assert new == task


def test_relabel_refuses_failed_programs(executor):
    task = SPLIT["6150a2bd"]
    with pytest.raises(ValueError, match="failed"):
        relabel(task, run(executor, task, [CRASH])[0])


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


# ---------------------------------------------------------------- sampling selections

def archive_rows(task: Task) -> list[dict]:
    """A task's archive: 3 fully correct (codes of different length), 2 train-perfect test-wrong, 1 with 3/4 train
    and the test right, 4 with 1/4, 6 with 0/4 (two pairs of output duplicates)."""
    rows = [synth_row(task, f"c{i}", [True] * 4, [True], code="def transform(grid):\n    return x" + "x" * (5 - i))
            for i in range(3)]
    rows += [synth_row(task, f"tw{i}", [True] * 4, [False], wrong=10 + i) for i in range(2)]
    rows += [synth_row(task, "three", [True, True, True, False], [True], wrong=20)]
    rows += [synth_row(task, f"one{i}", [i == 0, i == 1, i == 2, i == 3], [False], wrong=30 + i) for i in range(4)]
    rows += [synth_row(task, f"zero{i}", [False] * 4, [False], wrong=40 + i // 2) for i in range(6)]
    return rows


def ids(rows) -> list[str]:
    return [r["program_id"] for r in rows]


def test_select_correct_and_uniform():
    task = synth_task(seed=10)
    rows = archive_rows(task)
    rng = np.random.default_rng(0)
    assert sorted(ids(select_sampling(rows, task, "correct", 50, True, rng))) == ["c0", "c1", "c2"]
    assert sorted(ids(select_sampling(rows, task, "correct", 50, False, rng))) == ["c0", "c1", "c2", "tw0", "tw1"]
    assert len(select_sampling(rows, task, "correct", 2, True, rng)) == 2
    uni = select_sampling(rows, task, "uniform", 7, True, rng)
    assert len(uni) == 7 and len(set(ids(uni))) == 7 and set(ids(uni)) <= set(ids(rows))
    assert len(select_sampling(rows, task, "uniform", 100, True, rng)) == len(rows)
    assert select_sampling(rows, task, "uniform", 0, True, rng) == [] and select_sampling([], task, "greedy", 5, True, rng) == []
    with pytest.raises(ValueError, match="unknown sample selection"):
        select_sampling(rows, task, "best", 5, True, rng)


def test_greedy_order_test_weight_and_shorter_code_tie_break():
    task = synth_task(seed=11)
    rows = archive_rows(task)
    rng = np.random.default_rng(1)
    top = ids(select_sampling(rows, task, "greedy", 7, True, rng))
    # fully correct first, shortest code first; then 3/4+test (3+1.1)/5 = 0.82 beats 4/4 test-wrong 4/5 = 0.8
    assert top[:4] == ["c2", "c1", "c0", "three"] and set(top[4:6]) == {"tw0", "tw1"} and top[6].startswith("one")
    no_test = ids(rank_greedy(rows, task, False, rng))
    assert set(no_test[:5]) == {"c0", "c1", "c2", "tw0", "tw1"} and no_test[5] == "three"
    assert no_test.index("c2") < no_test.index("c1") < no_test.index("c0")


def test_greedy_diverse_halves_and_dedup():
    task = synth_task(seed=12)
    rows = archive_rows(task)
    greedy, diverse = greedy_diverse(rows, task, 6, True, np.random.default_rng(2))
    assert ids(greedy) == ["c2", "c1", "c0"]
    # 6 zero-correct programs but only 3 distinct outputs (<= 3): the 1-correct ones join the candidates
    assert len(diverse) == 3 and all(sum(r["correct_train_input"]) <= 1 for r in diverse)
    assert len({tuple(map(str, r["predicted_train_output"])) for r in diverse}) == 3
    pool = diverse_pool(rows[6:], 3)
    assert sorted(ids(pool)) == ["one0", "one1", "one2", "one3", "zero0", "zero2", "zero4"]
    assert sorted(ids(diverse_pool(rows[6:], 2))) == ["zero0", "zero2", "zero4"]  # 3 > 2: no fallback
    g, d = greedy_diverse(rows, task, 50, True, np.random.default_rng(3))
    assert len(g) == len(rows)  # fewer programs than the greedy half: all of them
    assert d == []  # nothing is left for the diverse half
    assert len(select_sampling(rows, task, "greedy_diverse", 6, True, np.random.default_rng(2))) == 6


def test_greedy_diverse_fallback_to_under_half_correct():
    task = synth_task(seed=13)
    rows = [synth_row(task, f"c{i}", [True] * 4, [True]) for i in range(4)]
    rows += [synth_row(task, "zero", [False] * 4, [False], wrong=1)]
    rows += [synth_row(task, f"two{i}", [True, True, False, False], [False], wrong=2 + i) for i in range(3)]
    rows += [synth_row(task, "three", [True, True, True, False], [False], wrong=9)]
    greedy, diverse = greedy_diverse(rows, task, 8, True, np.random.default_rng(0))
    assert ids(greedy)[:4] and set(ids(greedy)) == {"c0", "c1", "c2", "c3"}
    # 1 with 0 correct, none with 1: <= 4, so programs with < 50% correct join; 2/4 is not < 50%
    assert ids(diverse) == ["zero"]
    rows += [synth_row(task, "one", [True, False, False, False], [False], wrong=12)]
    _, diverse = greedy_diverse(rows, task, 8, True, np.random.default_rng(0))
    assert sorted(ids(diverse)) == ["one", "zero"]


def mv_rows(task: Task) -> list[Guarded]:
    """Majority key A: 6 programs at h = 0.5 (same test output); key B: 1 program at h = 1; 5 zero-correct."""
    rows = [synth_row(task, f"a{i}", [True, True, False, False], wrong=1, code=f"def transform(g):\n    return a{i}")
            for i in range(6)]
    rows += [synth_row(task, "b", [True] * 4, wrong=2)]
    rows += [synth_row(task, f"z{i}", [False] * 4, wrong=3 + i) for i in range(5)]
    for r in rows:
        r.pop("correct_test_input")
    return [Guarded(r) for r in rows]


def test_greedy_diverse_mv_without_ground_truth():
    task = synth_task(seed=14, hide_test=True)
    assert task.test_outputs is None
    rows = mv_rows(task)
    greedy, diverse = greedy_diverse(rows, task, 8, False, np.random.default_rng(0), majority_vote=True)
    assert len(greedy) == 4 and len(diverse) == 4
    assert all(r["program_id"].startswith(("a", "b")) for r in greedy)
    assert all(r["program_id"].startswith("z") for r in diverse)
    # key A weighs 6 + 3000, key B 1 + 1000: over many seeds A gets about 3/4 of the draws
    counts = Counter()
    for s in range(200):
        for r in majority_vote_half(rows, 4, np.random.default_rng(s)):
            counts[r["program_id"][0]] += 1
    assert 0.68 < counts["a"] / 800 < 0.82
    # more draws than a key has programs: drawn with replacement
    many = majority_vote_half(rows[6:7] + rows[7:], 3, np.random.default_rng(0))
    assert len(many) == 3
    # use_test=True does not make the mv selection read the test correctness either
    greedy_diverse(rows, task, 8, True, np.random.default_rng(0), majority_vote=True)
    assert len(select_sampling(rows, task, "greedy_diverse_mv", 8, False, np.random.default_rng(0))) == 8


def test_build_examples_mv_reads_no_ground_truth():
    task = synth_task("ttt", seed=15, hide_test=True)
    rows = [dict(r) for r in mv_rows(task)]
    for r in rows:
        r["correct_test_input"] = None
    table = rows_to_table(rows).drop_columns(["correct_test_input"])
    exs, stats = build_examples(table, {"ttt": task}, cfg(use_test=False, sample_selection="greedy_diverse_mv",
                                                          per_task=8))
    assert len(exs) == 8 and stats["sample"] == {"code_duplicates": 0, "greedy": 4, "diverse": 4}
    # the same archive with poisoned test flags and a task with (wrong) test outputs gives the same examples
    poisoned = rows_to_table([dict(r, correct_test_input=[True]) for r in rows])
    leaky = Task("ttt", task.train, (Pair(task.test[0].input, [[9]]),))
    exs2, _ = build_examples(poisoned, {"ttt": leaky}, cfg(use_test=False, sample_selection="greedy_diverse_mv",
                                                            per_task=8))
    assert exs2 == exs


# ---------------------------------------------------------------- refinement data

def lineage(task: Task) -> list[dict]:
    """Parents in each bin with correct children (codes name the parent), plus wrong / test-wrong / orphan children."""
    rows = []
    flags = {"zero": [False] * 4, "low": [True, False, False, False], "medium": [True, True, False, False],
             "max_zero": [True] * 4}
    per_bin = {"zero": 10, "low": 2, "medium": 10, "max_zero": 10}
    for k, (b, f) in enumerate(flags.items()):
        for i in range(per_bin[b]):
            pid = f"{b}{i}"
            rows.append(synth_row(task, pid, f, [False], wrong=100 * k + i,
                                  code=f"def transform(grid):\n    return parent_{pid}(grid)"))
            rows.append(synth_row(task, f"child_{pid}", [True] * 4, [True], kind="refine", parent_id=pid,
                                  code=f"def transform(grid):\n    return child_of_{pid}(grid)"))
    rows.append(synth_row(task, "max0", [True] * 4, [True], code="def transform(grid):\n    return parent_max0(grid)"))
    rows.append(synth_row(task, "child_max0", [True] * 4, [True], kind="refine", parent_id="max0"))
    rows.append(synth_row(task, "child_wrong", [True, True, True, False], [True], kind="refine", parent_id="zero0",
                          wrong=77))
    rows.append(synth_row(task, "child_testwrong", [True] * 4, [False], kind="refine", parent_id="zero1", wrong=78))
    rows.append(synth_row(task, "child_orphan", [True] * 4, [True], kind="refine", parent_id="gone"))
    rows.append(synth_row(task, "child_noparent", [True] * 4, [True], kind="refine", parent_id=None))
    return rows


def test_refinement_lineage_and_correct_children_only():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    exs, stats = build_examples(table, {"ref": task}, cfg(mode="refine", refine_selection="uniform"))
    assert {e.kind for e in exs} == {"refine"} and len(exs) == 32
    for e in exs:
        parent = e.program_id.removeprefix("child_")
        assert f"return parent_{parent}(grid)" in e.messages[1]["content"]
        assert e.response == f"```python\ndef transform(grid):\n    return child_of_{parent}(grid)\n```"
        assert e.task_id == "ref" and e.messages[0]["role"] == "system"
    assert not {"child_wrong", "child_testwrong", "child_orphan", "child_noparent", "child_max0"} & {
        e.program_id for e in exs}
    r = stats["refine"]
    assert (r["missing_parent"], r["excluded_parent_bin"], r["correct_children"], r["children"]) == (2, 1, 35, 37)
    # the prompt is exactly the inference refinement prompt of the original task with the parent's results
    rows = {x["program_id"]: x for x in table.to_pylist()}
    e = next(e for e in exs if e.program_id == "child_low0")
    p = rows["low0"]
    assert e.messages == refinement_messages(task, p["code"], row_outputs(p), p["correct_train_input"])
    assert "correctly worked on 1/4 train input-output pairs" in e.messages[1]["content"]


def test_refinement_without_test_outputs_keeps_train_perfect_children():
    task = synth_task("ref", seed=16)
    rows = lineage(task)
    for r in rows:
        r["correct_test_input"] = None
    hidden = Task("ref", task.train, tuple(Pair(p.input, None) for p in task.test))
    table = rows_to_table(rows).drop_columns(["correct_test_input"])
    exs, stats = build_examples(table, {"ref": hidden}, cfg(use_test=False, mode="refine", refine_selection="uniform"))
    # without ground truth: the test-wrong child counts, "max" parents are refinable ("max_zero" does not exist)
    assert "child_testwrong" in {e.program_id for e in exs} and "child_max0" in {e.program_id for e in exs}
    assert stats["refine"]["available_by_bin"]["max"] == 11 and stats["refine"]["missing_parent"] == 2


def test_diverse_refinement_balances_parent_bins():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    for n, expect in ((8, {"zero": 2, "low": 2, "medium": 2, "max_zero": 2}), (20, None)):
        exs, stats = build_examples(table, {"ref": task}, cfg(mode="refine", refine_per_task=n))
        sel = stats["refine"]["selected_by_bin"]
        assert len(exs) == n and sum(sel.values()) == n
        if expect:
            assert {b: v for b, v in sel.items() if v} == expect
        else:  # 5 per bin, low has only 2, the 3 left go to other bins
            assert sel["low"] == 2 and all(sel[b] >= 5 for b in ("zero", "medium", "max_zero"))
    assert stats["per_task"]["refine"] == {"min": 20, "mean": 20.0, "max": 20}


def test_select_refinement_directly():
    rng = np.random.default_rng(0)
    triples = [({"i": i}, {}, b) for i, b in enumerate(["zero"] * 6 + ["medium"] * 1 + ["max"] * 3)]
    out = select_refinement(triples, "diverse", 4, True, rng)  # "max" is not a parent bin with use_test
    assert len(out) == 4 and sum(t[2] == "medium" for t in out) == 1 and all(t[2] != "max" for t in out)
    assert len(select_refinement(triples, "diverse", 100, True, rng)) == 7
    assert len(select_refinement(triples, "diverse", 100, False, rng)) == 10
    assert len({t[0]["i"] for t in select_refinement(triples, "uniform", 5, True, rng)}) == 5
    with pytest.raises(ValueError):
        select_refinement(triples, "best", 5, True, rng)


def test_parent_lookup_in_pooled_archives():
    task = synth_task("ref", seed=16)
    a = synth_row(task, "p", [False] * 4, [False], model="A", wrong=1, code="def transform(grid):\n    return pA(grid)")
    b = synth_row(task, "p", [True, False, False, False], [False], model="B", wrong=2,
                  code="def transform(grid):\n    return pB(grid)")
    child = synth_row(task, "k", [True] * 4, [True], kind="refine", parent_id="p", model="B")
    exs, stats = build_examples(rows_to_table([a, b, child]), {"ref": task}, cfg(mode="refine"))
    assert len(exs) == 1 and "pB(grid)" in exs[0].messages[1]["content"] and "pA" not in exs[0].messages[1]["content"]
    assert stats["refine"]["selected_by_bin"]["low"] == 1 and stats["refine"]["ambiguous_parent"] == 0


# ---------------------------------------------------------------- examples end to end

def real_archive(executor, tmp_path: Path) -> tuple[pa.Table, dict[str, Task]]:
    tasks = {t: SPLIT[t] for t in ("6150a2bd", "3c9b0459", "25ff71a9")}
    archive = ProgramArchive(tmp_path / "programs.parquet")
    for tid, task in tasks.items():
        samples = run(executor, task, [ROT, ROT_LONG, FLIP_V, FLIP_H, TRANSPOSE, IDENT, CRASH, ZERO],
                      prefix=f"0/{tid}/s", model="base")
        archive.append(samples)
        children = run(executor, task, [ROT, FLIP_H], prefix=f"0/{tid}/r", kind="refine", model="base",
                       parent_id=f"0/{tid}/s2")
        archive.append(children)
    return archive.read(), tasks


def test_build_examples_on_real_programs(executor, tmp_path):
    table, tasks = real_archive(executor, tmp_path)
    exs, stats = build_examples(table, tasks, cfg(mode="both", sample_selection="greedy", per_task=3))
    assert all(isinstance(e, Example) for e in exs)
    by_kind = {k: [e for e in exs if e.kind == k] for k in ("sample", "refine")}
    assert stats["examples"] == {"sample": len(by_kind["sample"]), "refine": len(by_kind["refine"]), "total": len(exs)}
    assert stats["filters"]["programs"] == len(table)
    # CRASH x3; IDENT x3, plus FLIP_H (sample and child) on 25ff71a9, whose inputs are mostly left-right symmetric
    assert stats["filters"]["dropped"] == {"invalid_grid": 3, "all_background": 3, "near_constant": 0,
                                           "identity": 5, "long_line": 0, "hardcoded_output": 0}
    assert stats["filters"]["kept"] == len(table) - 11
    # rotate-180 tasks: the two correct programs lead, the shorter first
    s6150 = [e for e in by_kind["sample"] if e.task_id == "6150a2bd"]
    assert {e.program_id for e in s6150[:2]} == {"0/6150a2bd/s0", "0/6150a2bd/r0"}  # same code: random order
    assert s6150[2].program_id == "0/6150a2bd/s1" and s6150[0].response == f"```python\n{ROT}\n```"
    # sampling prompts: inference prompt of the relabelled task, no few-shot, no test outputs
    rows = {(r["program_id"]): r for r in table.to_pylist()}
    for e in by_kind["sample"]:
        assert e.messages == sampling_messages(relabel(tasks[e.task_id], rows[e.program_id]))
        assert "Test Output" not in e.messages[1]["content"] and "# Task 1:" not in e.messages[1]["content"]
    # refinement: the correct child of the flip-vertical parent, on 6150a2bd and 3c9b0459 (25ff71a9 not rotation)
    assert sorted(e.program_id for e in by_kind["refine"]) == ["0/3c9b0459/r0", "0/6150a2bd/r0"]
    for e in by_kind["refine"]:
        assert FLIP_V in e.messages[1]["content"] and e.response == f"```python\n{ROT}\n```"
    keys = {"config", "rows", "rows_unknown_task", "tasks", "filters", "examples", "per_task", "sample", "refine",
            "response_chars"}
    assert keys <= set(stats) and set(stats["per_task"]) == {"sample", "refine"}
    assert stats["response_chars"]["all"]["min"] > 0
    assert json.loads(json.dumps(stats)) == stats  # logged as JSON


def test_relabelled_sampling_example_shows_program_outputs(executor):
    task = SPLIT["6150a2bd"]
    row = run(executor, task, [FLIP_V])[0]
    ex = sample_example(task, row)
    for out in row["predicted_train_output"]:
        assert format_grid(out) in ex.messages[1]["content"]
    assert format_grid(task.train[0].output) not in ex.messages[1]["content"]


def test_modes_and_config_validation():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    counts = {}
    for mode in MODES:
        exs, stats = build_examples(table, {"ref": task}, cfg(mode=mode, per_task=5, refine_per_task=4))
        counts[mode] = (stats["examples"]["sample"], stats["examples"]["refine"])
        assert len(exs) == sum(counts[mode])
    assert counts == {"sample": (5, 0), "refine": (0, 4), "both": (5, 4)}
    for bad in ({"mode": "all"}, {"sample_selection": "best"}, {"refine_selection": "best"}, {"per_task": -1},
                {"use_test": None}, {"use_test": "auto"}):
        with pytest.raises(ValueError):
            build_examples(table, {"ref": task}, cfg(**bad))
    assert set(SAMPLE_SELECTIONS) >= {"correct", "greedy_diverse_mv"} and REFINE_SELECTIONS == ("uniform", "diverse")
    _, stats = build_examples(table, {}, cfg())  # rows of unknown tasks are skipped and counted
    assert stats["rows_unknown_task"] == len(table) and stats["examples"]["total"] == 0


@pytest.mark.parametrize("selection", SAMPLE_SELECTIONS)
def test_every_selection_is_deterministic_and_bounded(selection):
    tasks = {f"t{i}": synth_task(f"t{i}", seed=20 + i) for i in range(3)}
    rows = [r for tid, t in tasks.items() for r in archive_rows(t)]
    table = rows_to_table(rows)
    c = cfg(mode="both", sample_selection=selection, per_task=6, refine_per_task=3, shuffle_pairs=True)
    a, sa = build_examples(table, tasks, c, seed=1)
    b, sb = build_examples(table, tasks, c, seed=1)
    assert a == b and sa == sb
    assert sa["per_task"]["sample"]["max"] <= 6
    if selection in ("uniform", "greedy_diverse"):
        other, _ = build_examples(table, tasks, c, seed=2)
        assert other != a


def test_shuffle_pairs_is_consistent_for_refinement():
    task = synth_task("ref", n_train=5, seed=30)
    parent = synth_row(task, "p", [False, False, True, False, False], [False], wrong=1,
                       code="def transform(grid):\n    return parent(grid)")
    child = synth_row(task, "k", [True] * 5, [True], kind="refine", parent_id="p")
    seen_positions = set()
    for s in range(8):
        ex = refine_example(task, child, parent, rng=np.random.default_rng(s))
        text = ex.messages[1]["content"]
        order = sorted(range(5), key=lambda i: text.index(format_grid(task.train[i].input)))
        pos = order.index(2) + 1  # where the parent's only correct pair is shown
        seen_positions.add(pos)
        assert f"## Output {pos} computed by `transform` is correct." in text
        assert text.count("is correct.") == 1
        # each wrong pair shows the parent's own output for that pair, under its shown index
        for shown, i in enumerate(order, 1):
            if i != 2:
                block = text.split(f"## Output {shown} computed by `transform` is incorrect.\n")[1]
                assert block.split("##")[0].strip().endswith(format_grid(parent["predicted_train_output"][i]))
    assert len(seen_positions) > 1  # the pairs really move


def test_shuffled_sampling_example_keeps_every_pair():
    task = SPLIT["25ff71a9"]
    row = synth_row(task, "x", [True] * len(task.train), [True] * len(task.test))
    plain = sample_example(task, row, rng=None).messages[1]["content"]
    shuffled = sample_example(task, row, rng=np.random.default_rng(3)).messages[1]["content"]
    assert plain != shuffled and len(plain) == len(shuffled)
    def blocks(text):
        task_part = text.split("# Task to solve:\n")[1]
        return sorted(re.sub(r"## (Test )?(Input|Output) \d+", "", task_part).split("\n\n"))
    assert blocks(plain) == blocks(shuffled)


def test_archive_rows_are_unpacked_per_task_in_archive_order():
    from soar.hindsight.examples import _TaskRows

    table = pa.table({"task_id": ["b", "a", "x", "b", "a", "b"], "program_id": ["b0", "a0", "x0", "b1", "a1", "b2"]})
    rows = _TaskRows(table, {"a": None, "b": None})  # "x" is not a known task
    assert list(rows) == ["a", "b"] and len(rows) == 2 and rows.table.num_rows == 5
    assert [r["program_id"] for r in rows["b"]] == ["b0", "b1", "b2"]
    assert [r["program_id"] for r in rows["a"]] == ["a0", "a1"]
