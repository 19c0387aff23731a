"""Refinement pool and parent selectors (spec §4, §14 fact 5): initial pool (SOAR's filters), REX / uniform /
greedy, h = train accuracy, visits counted in completions."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from soar.data import load_split
from soar.scoring.bins import accuracy_bin
from soar.scoring.filters import keep_program
from soar.search.rex import SELECTORS, Arm, RefinementPool, initial_pools

C = 20.0


# ---------------------------------------------------------------- initial pool

TASK = load_split("arc_agi_1", "training")["d631b094"]  # 4 train pairs, 1 test input; outputs like [[1, 1]], [[7]]
HONEST = "def transform(grid):\n    return grid"  # the code of hand-made rows: no digit, so nothing hard-coded


def row(pid, acc, valid=True, test=None, code=HONEST):
    """An archive row of TASK whose outputs pass SOAR's filters: the first round(4 acc) train outputs right, the
    others wrong (and distinct); an invalid row fails on the test input."""
    k = round(acc * len(TASK.train))
    train = [p.output if i < k else [[i + 1] * 5] for i, p in enumerate(TASK.train)]
    return {"program_id": pid, "task_id": TASK.id, "code": code, "train_acc": acc, "valid": valid,
            "predicted_train_output": train, "predicted_test_output": [[[4, 4, 4, 4, 4]] if valid else None],
            "correct_test_input": test}


def initial(rows, use_test, per_bin=300, seed=0):
    return initial_pools(rows, TASK, use_test=use_test, per_bin=per_bin, rngs=[np.random.default_rng(seed)])[0]


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
    pool = initial(MIXED, use_test=True)
    assert ids(pool) == ["z", "lo", "me", "half"]
    assert [a.bin for a in pool.arms] == ["zero", "low", "medium", "max_zero"]
    assert all(a.n_refined == 0 for a in pool.arms)
    assert len(pool) == 4


def test_initial_without_test_keeps_train_perfect_and_never_reads_test():
    rows = [{k: v for k, v in r.items() if k != "correct_test_input"} for r in MIXED]  # no test column at all
    pool = initial(rows, use_test=False)
    assert ids(pool) == ["z", "lo", "me", "right", "half"]
    assert [a.bin for a in pool.arms] == ["zero", "low", "medium", "max", "max"]


def test_initial_empty():
    rng = np.random.default_rng(0)
    assert len(initial([], use_test=True)) == 0
    only_bad = [row("a", 0.5, valid=False), row("b", 1.0, test=[True])]
    assert len(initial(only_bad, use_test=True)) == 0
    with pytest.raises(ValueError, match="empty"):
        RefinementPool().select("rex", rng)


HARDCODED = ("def transform(grid):\n    n = sum(1 for r in grid for v in r if v)\n"
             "    return {2: [[1, 1]], 3: [[2, 2, 2]], 1: [[7]], 4: [[8, 8, 8, 8]]}.get(n, [[4, 4, 4, 4, 4]])")


def test_a_program_that_hardcodes_the_train_outputs_is_never_a_starting_parent():
    """Finding 2 (spec §4.1): the pool starts from the programs that pass SOAR's filters (§7.2). Unfiltered, the
    program that copies the train outputs (h = 1, test wrong: "max_zero") got 17 of these 40 picks."""
    rows = [row(f"a{i}", 0.25, test=[False]) for i in range(10)] + [row(f"b{i}", 0.5, test=[False]) for i in range(10)]
    rows.append(row("hard", 1.0, test=[False], code=HARDCODED))
    assert keep_program(rows[-1], TASK) == "hardcoded_output" and all(keep_program(r, TASK) is None for r in rows[:-1])
    pool = initial(rows, use_test=True)
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(40):
        arm = pool.select("rex", rng)
        pool.visit(arm.program_id, 4)
        picks.append(arm.program_id)
    assert "hard" not in ids(pool) and "hard" not in picks
    assert len(pool) == 20


def test_initial_filters_each_program_once_for_all_islands():
    rows = [row(f"{i}", 0.5, test=[False]) for i in range(30)] + [row("hard", 1.0, test=[False], code=HARDCODED)]
    pools = initial_pools(rows, TASK, use_test=True, per_bin=10, rngs=[np.random.default_rng(s) for s in range(3)])
    assert [len(p) for p in pools] == [10, 10, 10] and len({tuple(ids(p)) for p in pools}) == 3
    with pytest.raises(ValueError, match="not d631b094"):
        initial_pools([{**rows[0], "task_id": "other"}], TASK, use_test=True, rngs=[np.random.default_rng(0)])


def big_rows():
    counts = {0.0: 700, 0.25: 5, 0.5: 400}
    rows = [row(f"{acc}-{i}", acc, test=[False]) for acc, n in counts.items() for i in range(n)]
    rows += [row(f"top-{i}", 1.0, test=[False]) for i in range(10)]
    rows += [row(f"right-{i}", 1.0, test=[True]) for i in range(500)]
    perm = np.random.default_rng(99).permutation(len(rows))  # interleave the bins
    return [rows[i] for i in perm]


def test_initial_caps_each_bin_at_random_and_keeps_row_order():
    rows = big_rows()
    pool = initial(rows, use_test=True, per_bin=300, seed=1)
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
    a = initial(rows, use_test=True, per_bin=50, seed=7)
    b = initial(rows, use_test=True, per_bin=50, seed=7)
    c = initial(rows, use_test=True, per_bin=50, seed=8)
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert len(a) == 50 + 5 + 50 + 10


def test_initial_per_bin_zero_and_negative():
    assert len(initial(MIXED, use_test=True, per_bin=0)) == 0
    with pytest.raises(ValueError, match="per_bin"):
        initial(MIXED, use_test=True, per_bin=-1)


# ---------------------------------------------------------------- REX (Thompson sampling)

def p_argmax(hs, ns, C=C):
    """Exact probability that each arm's Beta(1 + C h, 1 + C (1 - h) + N) draw is the largest."""
    dists = [stats.beta(1 + C * h, 1 + C * (1 - h) + n) for h, n in zip(hs, ns)]
    probs = []
    for i, d in enumerate(dists):
        others = [o for j, o in enumerate(dists) if j != i]
        probs.append(integrate.quad(lambda x, d=d, others=others: d.pdf(x) * math.prod(o.cdf(x) for o in others), 0, 1)[0])
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


def refine(pool, rng, picks, n=1, method="rex"):
    """`picks` rounds of select + visit(n completions); the picked ids."""
    out = []
    for _ in range(picks):
        arm = pool.select(method, rng)
        pool.visit(arm.program_id, n)
        out.append(arm.program_id)
    return out


def test_rex_counts_refinements_in_one_pool():
    # Upstream never increments N, so the 0.6 arm would get ~1.6% of picks; counting spreads the picks.
    pool = make_pool([0.9, 0.6])
    picked = refine(pool, np.random.default_rng(3), 1000)
    high, low = pool.arms
    assert (high.n_refined, low.n_refined) == (picked.count("p0"), picked.count("p1"))
    assert high.n_refined + low.n_refined == 1000
    no_count = 1000 * p_argmax([0.9, 0.6], [0, 0])[1]
    assert low.n_refined > 10 * no_count  # ~16 without counting
    assert high.n_refined > low.n_refined  # the better arm still gets more


def test_visits_count_completions_not_picks():
    """Finding 4 (Fig. 11: cnt[p] += n_completions): with n = 4 each pick adds 4 to N, so the exploration penalty
    is 4 times that of counting picks, and the second-best arm gets more of the picks."""
    pool = make_pool([0.2, 0.5, 0.8])
    rng = np.random.default_rng(0)
    for k in range(1, 31):
        before = [a.n_refined for a in pool.arms]
        arm = pool.select("rex", rng)
        assert [a.n_refined for a in pool.arms] == before  # picking alone counts nothing
        pool.visit(arm.program_id, 4)
        after = [a.n_refined for a in pool.arms]
        i = ids(pool).index(arm.program_id)
        assert after[i] == before[i] + 4 and sum(after) == 4 * k
        assert arm is pool.arms[i]
    # 20 rounds on one 0.8 arm and nine 0.2 arms, 20 seeds: the 0.2 arms get ~1.8 picks per run counting picks,
    # ~9.6 counting 4 completions per pick
    hs = [0.8] + [0.2] * 9
    others = {n: sum(p != "p0" for seed in range(20) for p in refine(make_pool(hs), np.random.default_rng(seed), 20, n))
              for n in (1, 4)}
    assert others[4] > 3 * others[1]
    with pytest.raises(KeyError, match="nope"):
        pool.visit("nope", 4)
    with pytest.raises(ValueError, match="completions"):
        pool.visit("p0", -1)


def test_rex_respects_C():
    # C = 0 ignores h entirely: with equal N every arm is equally likely.
    counts = frequencies([0.9, 0.1], [0, 0], picks=2000, C=0.0)
    assert abs(counts[0] - 1000) < 4.5 * math.sqrt(500)
    with pytest.raises(ValueError, match="C="):
        make_pool([0.5]).select("rex", np.random.default_rng(0), C=-1.0)


def test_added_children_are_selectable_and_a_good_child_wins():
    pool = make_pool([0.2] * 50)
    rng = np.random.default_rng(0)
    refine(pool, rng, 20)
    pool.add("child", 0.95, "medium")
    assert len(pool) == 51 and pool.arms[-1].n_refined == 0 and "child" in pool
    picked = refine(pool, rng, 20)
    assert picked.count("child") >= 18
    assert pool.arms[-1].n_refined == picked.count("child")


def test_a_child_that_fails_on_some_inputs_keeps_its_train_accuracy():
    """Finding 3 (spec §5.3): h is the mean of the train-pair flags, errors counted per input. A child right on 3
    of 4 train pairs that crashes on the test input has h = 0.75 (it was 0 when any failure zeroed h)."""
    pool = make_pool([0.2, 0.2])
    pool.add("partial", 0.75, "medium")
    assert pool.arms[-1].train_acc == 0.75
    assert pool.select("greedy", np.random.default_rng(0)).program_id == "partial"
    expected = p_argmax([0.75, 0.2, 0.2], [0, 0, 0])[0]  # ~0.99
    rng = np.random.default_rng(0)
    counts = sum(pool.select("rex", rng).program_id == "partial" for _ in range(2000))
    assert abs(counts - 2000 * expected) <= 4.5 * math.sqrt(2000 * expected * (1 - expected)) + 3


def test_add_rejects_duplicates_and_bad_values():
    pool = make_pool([0.5])
    with pytest.raises(ValueError, match="already"):
        pool.add("p0", 0.5, "medium")
    with pytest.raises(ValueError, match="bin"):
        pool.add("x", 0.5, "huge")
    with pytest.raises(ValueError, match="train_acc"):
        pool.add("y", 1.5, "max")
    with pytest.raises(ValueError, match="n_refined"):
        pool.add("z", 0.5, "medium", n_refined=-1)
    assert len(pool) == 1


def test_pool_grows_past_its_initial_capacity():
    pool = RefinementPool()
    for i in range(100):
        pool.add(f"c{i}", (i % 10) / 10, "medium", n_refined=i)
    pool.add("best", 1.0, "max")
    assert len(pool) == 101 and [a.n_refined for a in pool.arms[:100]] == list(range(100))
    assert pool.select("greedy", np.random.default_rng(0)).program_id == "best"


def test_selection_is_deterministic_given_the_rng():
    rows = big_rows()

    def run(seed):
        rng = np.random.default_rng(seed)
        pool = initial(rows, use_test=True, per_bin=100, seed=seed)
        out = []
        for k in range(200):
            out += refine(pool, rng, 1, n=2)
            pool.add(f"child-{k}", float(rng.random()), "medium")
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


class CountingArm(Arm):
    """An arm that counts the reads of its fields: a selector that loops over the arms reads every one of them."""

    reads = 0

    def __getattribute__(self, name: str) -> object:
        if name in ("program_id", "train_acc", "bin", "n_refined"):
            CountingArm.reads += 1
        return super().__getattribute__(name)


@pytest.mark.parametrize("method", SELECTORS)
def test_a_pick_reads_only_the_picked_arm_on_large_pools(method):
    """h and N are mirrored in numpy arrays: a pick costs no Python loop over the 5000 arms (which would make a
    task's refinement quadratic in its budget); select + visit read the picked arm only."""
    rng = np.random.default_rng(0)
    pool = RefinementPool(CountingArm(f"p{i}", float(h), "medium") for i, h in enumerate(rng.random(5000)))
    CountingArm.reads = 0
    for k in range(300):
        refine(pool, rng, 1, n=4, method=method)  # reads the pick's program_id twice, visit its n_refined once
        pool.add(f"c{k}", 0.5, "medium")
    assert CountingArm.reads <= 3 * 300  # a loop over the arms would read 5000 per pick


# ---------------------------------------------------------------- uniform and greedy

def test_uniform_is_roughly_uniform_and_ignores_h():
    hs = [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0, 0.0]
    pool = make_pool(hs)
    picks = 5000
    refine(pool, np.random.default_rng(0), picks, method="uniform")
    counts = np.array([a.n_refined for a in pool.arms])
    assert counts.sum() == picks
    expected = picks / len(hs)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.999, df=len(hs) - 1)  # 27.9


def test_greedy_picks_highest_h_then_fewest_refinements_then_first():
    pool = make_pool([0.5, 0.9, 0.9, 0.2])
    rng = np.random.default_rng(0)
    assert refine(pool, rng, 6, method="greedy") == ["p1", "p2"] * 3
    assert [a.n_refined for a in pool.arms] == [0, 3, 3, 0]

    pool = make_pool([0.9, 0.9, 0.4], ns=[3, 1, 0])
    assert refine(pool, rng, 5, method="greedy") == ["p1", "p1", "p0", "p1", "p0"]
    pool.add("new", 0.95, "medium")
    assert pool.select("greedy", rng).program_id == "new"


def test_unknown_method_lists_the_selectors():
    pool = make_pool([0.5])
    with pytest.raises(ValueError) as err:
        pool.select("ucb", np.random.default_rng(0))
    assert all(name in str(err.value) for name in SELECTORS)
    assert pool.arms[0].n_refined == 0
    assert SELECTORS == ("rex", "uniform", "greedy")
