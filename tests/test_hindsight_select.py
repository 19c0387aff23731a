"""Hindsight data selection (spec §8, §10, soar.hindsight.select): correct / uniform / greedy / greedy-diverse
sampling data, the majority-vote half without ground truth, refinement data balanced over parent bins."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hindsight_rows import archive_rows, ids, mv_rows, synth_row, synth_task

from soar.hindsight.select import (
    diverse_pool,
    greedy_diverse,
    majority_vote_half,
    rank_greedy,
    select_refinement,
    select_sampling,
)


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


def test_select_refinement_directly():
    rng = np.random.default_rng(0)
    triples = [({"i": i}, {}, b) for i, b in enumerate(["zero"] * 6 + ["medium"] * 1 + ["max"] * 3)]
    out = select_refinement(triples, "diverse", 4, True, rng)  # "max" is not a parent bin with use_test
    assert len(out) == 4 and sum(t[2] == "medium" for t in out) == 1 and all(t[2] != "max" for t in out)
    assert len(select_refinement(triples, "diverse", 100, True, rng)) == 7
    assert len(select_refinement(triples, "diverse", 100, False, rng)) == 10
    assert len({t[0]["i"] for t in select_refinement(triples, "uniform", 5, True, rng)}) == 5
    with pytest.raises(ValueError, match="unknown refine selection 'best'; allowed: uniform, diverse"):
        select_refinement(triples, "best", 5, True, rng)
