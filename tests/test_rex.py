"""Refinement pool and parent selectors (spec §4, §14 fact 5): bins, initial pool, REX / uniform / greedy."""
import math
import time

import numpy as np
import pytest
from scipy import integrate, stats

from soar.search.rex import SELECTORS, Arm, RefinementPool, accuracy_bin

C = 20.0


# ---------------------------------------------------------------- bins

@pytest.mark.parametrize("acc, with_test_right, with_test_wrong, without_test", [
    (0.0, "zero", "zero", "zero"),
    (0.34, "low", "low", "low"),
    (0.3400001, "medium", "medium", "medium"),
    (0.97, "medium", "medium", "medium"),
    (0.98, "max", "max_zero", "max"),
    (1.0, "max", "max_zero", "max"),
    (1e-9, "low", "low", "low"),
    (1 / 3, "low", "low", "low"),
    (2 / 3, "medium", "medium", "medium"),
])
def test_accuracy_bin_boundaries(acc, with_test_right, with_test_wrong, without_test):
    assert accuracy_bin(acc, True, use_test=True) == with_test_right
    assert accuracy_bin(acc, False, use_test=True) == with_test_wrong
    assert accuracy_bin(acc, None, use_test=False) == without_test
    assert accuracy_bin(acc, True, use_test=False) == without_test  # the test result is ignored without use_test


def test_accuracy_bin_at_archive_float32_precision():
    # train_acc is stored as float32; float32(0.34) is slightly above 0.34 but is still "low".
    assert float(np.float32(0.34)) > 0.34
    assert accuracy_bin(float(np.float32(0.34)), None, use_test=False) == "low"
    assert accuracy_bin(np.float32(0.98), False, use_test=True) == "max_zero"
    assert accuracy_bin(np.float32(49 / 50), None, use_test=False) == "max"


def test_accuracy_bin_rejects_bad_input():
    with pytest.raises(ValueError, match="test_correct"):
        accuracy_bin(1.0, None, use_test=True)
    assert accuracy_bin(0.5, None, use_test=True) == "medium"  # below the top bin the test result is not needed
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="train_acc"):
            accuracy_bin(bad, None, use_test=False)


# ---------------------------------------------------------------- initial pool

def row(pid, acc, valid=True, test=None):
    return {"program_id": pid, "task_id": "t", "train_acc": acc, "valid": valid, "correct_test_input": test}


MIXED = [
    row("z", 0.0, test=[False]),
    row("bad", 0.5, valid=False, test=[False]),
    row("lo", 0.25, test=[False]),
    row("me", 0.5, test=[True]),
    row("right", 1.0, test=[True, True]),
    row("half", 1.0, test=[True, False]),
    row("bad_top", 1.0, valid=False, test=[True]),
]


def ids(pool):
    return [a.program_id for a in pool.arms]


def test_initial_with_test_excludes_invalid_and_fully_correct():
    pool = RefinementPool.initial(MIXED, use_test=True, rng=np.random.default_rng(0))
    assert ids(pool) == ["z", "lo", "me", "half"]
    assert [a.bin for a in pool.arms] == ["zero", "low", "medium", "max_zero"]
    assert all(a.n_refined == 0 and a.valid for a in pool.arms)
    assert len(pool) == 4


def test_initial_without_test_keeps_train_perfect_and_never_reads_test():
    rows = [{k: v for k, v in r.items() if k != "correct_test_input"} for r in MIXED]  # no test column at all
    pool = RefinementPool.initial(rows, use_test=False, rng=np.random.default_rng(0))
    assert ids(pool) == ["z", "lo", "me", "right", "half"]
    assert [a.bin for a in pool.arms] == ["zero", "low", "medium", "max", "max"]


def test_initial_empty():
    rng = np.random.default_rng(0)
    assert len(RefinementPool.initial([], use_test=True, rng=rng)) == 0
    only_bad = [row("a", 0.5, valid=False), row("b", 1.0, test=[True])]
    assert len(RefinementPool.initial(only_bad, use_test=True, rng=rng)) == 0
    with pytest.raises(ValueError, match="empty"):
        RefinementPool().select("rex", rng)


def big_rows():
    counts = {0.0: 700, 0.25: 5, 0.5: 400}
    rows = [row(f"{acc}-{i}", acc, test=[False]) for acc, n in counts.items() for i in range(n)]
    rows += [row(f"top-{i}", 1.0, test=[False]) for i in range(10)]
    rows += [row(f"right-{i}", 1.0, test=[True]) for i in range(500)]
    perm = np.random.default_rng(99).permutation(len(rows))  # interleave the bins
    return [rows[i] for i in perm]


def test_initial_caps_each_bin_at_random_and_keeps_row_order():
    rows = big_rows()
    pool = RefinementPool.initial(rows, use_test=True, per_bin=300, rng=np.random.default_rng(1))
    bins = [a.bin for a in pool.arms]
    assert {b: bins.count(b) for b in set(bins)} == {"zero": 300, "low": 5, "medium": 300, "max_zero": 10}
    order = {r["program_id"]: i for i, r in enumerate(rows)}
    positions = [order[p] for p in ids(pool)]
    assert positions == sorted(positions)
    # a random subset, not the first 300 of the bin
    zero_rows = [r["program_id"] for r in rows if r["train_acc"] == 0.0]
    assert set(ids(pool)) & set(zero_rows) != set(zero_rows[:300])
    assert len(set(ids(pool)) & set(zero_rows[300:])) > 100  # ~ 300 * 400/700 expected


def test_initial_is_deterministic_given_the_seed():
    rows = big_rows()
    a = RefinementPool.initial(rows, use_test=True, per_bin=50, rng=np.random.default_rng(7))
    b = RefinementPool.initial(rows, use_test=True, per_bin=50, rng=np.random.default_rng(7))
    c = RefinementPool.initial(rows, use_test=True, per_bin=50, rng=np.random.default_rng(8))
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert len(a) == 50 + 5 + 50 + 10


def test_initial_per_bin_zero_and_negative():
    assert len(RefinementPool.initial(MIXED, use_test=True, per_bin=0, rng=np.random.default_rng(0))) == 0
    with pytest.raises(ValueError, match="per_bin"):
        RefinementPool.initial(MIXED, use_test=True, per_bin=-1, rng=np.random.default_rng(0))


# ---------------------------------------------------------------- REX (Thompson sampling)

def p_argmax(hs, ns, C=C):
    """Exact probability that each arm's Beta(1 + C h, 1 + C (1 - h) + N) draw is the largest."""
    dists = [stats.beta(1 + C * h, 1 + C * (1 - h) + n) for h, n in zip(hs, ns)]
    probs = []
    for i, d in enumerate(dists):
        others = [o for j, o in enumerate(dists) if j != i]
        probs.append(integrate.quad(lambda x: d.pdf(x) * math.prod(o.cdf(x) for o in others), 0, 1)[0])
    return np.array(probs)


def make_pool(hs, ns=None):
    ns = ns or [0] * len(hs)
    return RefinementPool(Arm(f"p{i}", h, accuracy_bin(h, None, False), n) for i, (h, n) in enumerate(zip(hs, ns)))


def frequencies(hs, ns, picks=2000, seed=0, C=C):
    """How often each arm is picked first from a fresh pool (so the visit counts stay as given)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(hs), dtype=int)
    for _ in range(picks):
        arm = make_pool(hs, ns).select("rex", rng, C=C)
        counts[int(arm.program_id[1:])] += 1
    return counts


@pytest.mark.parametrize("hs, ns", [
    ([0.9, 0.1], [0, 0]),     # p(high) ~ 1 - 1e-7
    ([0.6, 0.4], [0, 0]),     # p(high) ~ 0.89
    ([0.9, 0.6], [0, 0]),     # p(high) ~ 0.98
    ([0.9, 0.6], [40, 0]),    # refined 40 times: p(high) ~ 0.01
    ([0.9, 0.5], [30, 0]),    # p(high) ~ 0.14
    ([0.7, 0.5, 0.3, 0.7], [5, 0, 0, 0]),
])
def test_rex_pick_probabilities_match_the_beta_posterior(hs, ns):
    picks = 2000
    expected = p_argmax(hs, ns)
    assert expected.sum() == pytest.approx(1.0, abs=1e-6)
    counts = frequencies(hs, ns, picks)
    sigma = np.sqrt(picks * expected * (1 - expected))
    assert np.all(np.abs(counts - picks * expected) <= 4.5 * sigma + 3), (counts, picks * expected)


def test_rex_high_arm_dominates_without_visits():
    counts = frequencies([0.9, 0.1], [0, 0])
    assert counts[0] >= 1998


def test_rex_visit_counts_shift_picks_to_less_refined_arms():
    fresh = frequencies([0.9, 0.6], [0, 0])
    refined = frequencies([0.9, 0.6], [40, 0])
    assert fresh[1] < 80 and refined[1] > 1900  # expected ~33 and ~1982


def test_rex_counts_refinements_in_one_pool():
    # Upstream never increments N, so the 0.6 arm would get ~1.6% of picks; counting spreads the picks.
    pool = make_pool([0.9, 0.6])
    rng = np.random.default_rng(3)
    picked = [pool.select("rex", rng).program_id for _ in range(1000)]
    high, low = pool.arms
    assert (high.n_refined, low.n_refined) == (picked.count("p0"), picked.count("p1"))
    assert high.n_refined + low.n_refined == 1000
    no_count = 1000 * p_argmax([0.9, 0.6], [0, 0])[1]
    assert low.n_refined > 10 * no_count  # ~16 without counting
    assert high.n_refined > low.n_refined  # the better arm still gets more


def test_select_increments_the_picked_arm_by_one():
    pool = make_pool([0.2, 0.5, 0.8])
    rng = np.random.default_rng(0)
    for k in range(1, 31):
        before = [a.n_refined for a in pool.arms]
        arm = pool.select("rex", rng)
        after = [a.n_refined for a in pool.arms]
        i = ids(pool).index(arm.program_id)
        assert after[i] == before[i] + 1 and sum(after) == k
        assert arm is pool.arms[i]


def test_rex_respects_C():
    # C = 0 ignores h entirely: with equal N every arm is equally likely.
    counts = frequencies([0.9, 0.1], [0, 0], picks=2000, C=0.0)
    assert abs(counts[0] - 1000) < 4.5 * math.sqrt(500)
    with pytest.raises(ValueError, match="C="):
        make_pool([0.5]).select("rex", np.random.default_rng(0), C=-1.0)


def test_added_children_are_selectable_and_a_good_child_wins():
    pool = make_pool([0.2] * 50)
    rng = np.random.default_rng(0)
    for _ in range(20):
        pool.select("rex", rng)
    pool.add("child", 0.95, True, "medium")
    assert len(pool) == 51 and pool.arms[-1].n_refined == 0
    picked = [pool.select("rex", rng).program_id for _ in range(20)]
    assert picked.count("child") >= 18
    assert pool.arms[-1].n_refined == picked.count("child")


def test_invalid_child_joins_with_h_zero():
    pool = make_pool([0.2, 0.2])
    pool.add("broken", 1.0, False, "max")
    broken = pool.arms[-1]
    assert len(pool) == 3 and broken.h == 0.0 and broken.train_acc == 1.0 and not broken.valid
    rng = np.random.default_rng(0)
    assert all(pool.select("greedy", rng).program_id != "broken" for _ in range(20))
    # in REX it can still be picked, but rarely: expected share ~ p_argmax([0, .2, .2])[0]
    expected = p_argmax([0.0, 0.2, 0.2], [0, 0, 0])[0]
    counts = frequencies([0.0, 0.2, 0.2], [0, 0, 0], picks=2000)
    assert counts[0] <= 2000 * expected + 4.5 * math.sqrt(2000 * expected) + 3


def test_add_rejects_duplicates_and_bad_values():
    pool = make_pool([0.5])
    with pytest.raises(ValueError, match="already"):
        pool.add("p0", 0.5, True, "medium")
    with pytest.raises(ValueError, match="bin"):
        pool.add("x", 0.5, True, "huge")
    with pytest.raises(ValueError, match="train_acc"):
        pool.add("y", 1.5, True, "max")
    assert len(pool) == 1


def test_pool_grows_past_its_initial_capacity():
    pool = RefinementPool()
    for i in range(100):
        pool.add(f"c{i}", (i % 10) / 10, True, "medium")
    pool.add("best", 1.0, True, "max")
    assert len(pool) == 101
    assert pool.select("greedy", np.random.default_rng(0)).program_id == "best"


def test_selection_is_deterministic_given_the_rng():
    rows = big_rows()

    def run(seed):
        rng = np.random.default_rng(seed)
        pool = RefinementPool.initial(rows, use_test=True, per_bin=100, rng=rng)
        out = []
        for k in range(200):
            arm = pool.select("rex", rng)
            out.append(arm.program_id)
            pool.add(f"child-{k}", float(rng.random()), True, "medium")
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_rex_is_fast_on_large_pools():
    rng = np.random.default_rng(0)
    pool = RefinementPool(Arm(f"p{i}", float(h), "medium") for i, h in enumerate(rng.random(5000)))
    start = time.perf_counter()
    for k in range(3000):
        pool.select("rex", rng)
        pool.add(f"c{k}", 0.5, True, "medium")
    assert time.perf_counter() - start < 10.0  # ~1.5 s expected; catches per-pick Python loops over arms


# ---------------------------------------------------------------- uniform and greedy

def test_uniform_is_roughly_uniform_and_ignores_h():
    hs = [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0, 0.0]
    pool = make_pool(hs)
    rng = np.random.default_rng(0)
    picks = 5000
    for _ in range(picks):
        pool.select("uniform", rng)
    counts = np.array([a.n_refined for a in pool.arms])
    assert counts.sum() == picks
    expected = picks / len(hs)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.999, df=len(hs) - 1)  # 27.9


def test_greedy_picks_highest_h_then_fewest_refinements_then_first():
    pool = make_pool([0.5, 0.9, 0.9, 0.2])
    rng = np.random.default_rng(0)
    assert [pool.select("greedy", rng).program_id for _ in range(6)] == ["p1", "p2"] * 3
    assert [a.n_refined for a in pool.arms] == [0, 3, 3, 0]

    pool = make_pool([0.9, 0.9, 0.4], ns=[3, 1, 0])
    assert [pool.select("greedy", rng).program_id for _ in range(5)] == ["p1", "p1", "p0", "p1", "p0"]
    pool.add("new", 0.95, True, "medium")
    assert pool.select("greedy", rng).program_id == "new"


def test_unknown_method_lists_the_selectors():
    pool = make_pool([0.5])
    with pytest.raises(ValueError) as err:
        pool.select("ucb", np.random.default_rng(0))
    assert all(name in str(err.value) for name in SELECTORS)
    assert pool.arms[0].n_refined == 0
    assert SELECTORS == ("rex", "uniform", "greedy")
