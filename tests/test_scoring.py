"""Per-program correctness, per-task results (oracles, vote, gap) and their summary."""
import pytest

from soar.data.task import Pair, Task
from soar.execution.outcome import Failure, FailureKind
from soar.scoring import FILTERS, canonical, score_program, score_task, summarize

ERR = Failure(FailureKind.TIMEOUT)
WRONG = ((0, 0),)


def make_task(test_known: bool = True, task_id: str = "t1") -> Task:
    """2 train pairs, 2 test pairs; the rule is 'add 1', so the right answer to [[n]] is [[n + 1]]."""
    train = (Pair([[1]], [[2]]), Pair([[2, 3]], [[3, 4]]))
    test = (Pair([[5]], [[6]] if test_known else None), Pair([[7]], [[8]] if test_known else None))
    return Task(task_id, train, test)


T0, T1 = ((2,),), ((3, 4),)  # right train outputs
S0, S1 = ((6,),), ((8,),)  # right test outputs


def test_canonical_is_tuple_of_plain_ints():
    assert canonical([[1, 2], [3, 4]]) == ((1, 2), (3, 4))


def test_score_program_counts_pairs_and_validity():
    task = make_task()
    s = score_program(task, [T0, WRONG, S0, ERR])
    assert s.correct_train == [True, False]
    assert s.correct_test == [True, False]
    assert s.train_acc == 0.5
    assert not s.valid
    perfect = score_program(task, [T0, T1, S0, S1])
    assert (perfect.train_acc, perfect.correct_test, perfect.valid) == (1.0, [True, True], True)


def test_score_program_exact_equality_only():
    task = make_task()
    # the right values in the wrong shape, and a Failure, are both incorrect
    s = score_program(task, [((2,), (0,)), ((3,), (4,)), ERR, ERR])
    assert s.correct_train == [False, False] and s.train_acc == 0.0


def test_score_program_unknown_test_outputs():
    s = score_program(make_task(test_known=False), [T0, T1, S0, S1])
    assert s.correct_test is None and s.train_acc == 1.0


def test_score_program_rejects_wrong_number_of_outputs():
    with pytest.raises(ValueError, match="expected 4 outputs"):
        score_program(make_task(), [T0, T1, S0])


# P1 is train-perfect but right on test input 0 only; P2 and P3 (h = 0.5) are right on test input 1 only;
# P4 fails everywhere. Vote: (WRONG, S1) 2 * 501 = 1002 > (S0, WRONG) 1001.
PROGRAMS = [
    ("p1", [T0, T1, S0, WRONG]),
    ("p2", [T0, WRONG, WRONG, S1]),
    ("p3", [T0, WRONG, WRONG, S1]),
    ("p4", [ERR, ERR, ERR, ERR]),
]


def test_score_task_oracles_vote_and_gap():
    r = score_task(make_task(), PROGRAMS)
    assert (r.task_id, r.n_programs, r.n_valid, r.valid_rate) == ("t1", 4, 3, 0.75)
    assert r.mean_train_acc == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    assert r.train_oracle is True
    assert r.test_oracle is False  # no single program gets both test outputs
    assert r.test_oracle_kaggle == 1.0
    assert r.attempts == [(WRONG, S1), (S0, WRONG)]
    assert r.vote_pass2 == 1.0 and r.vote_gap == 0.0


def test_score_task_one_attempt_and_arc25():
    r = score_task(make_task(), PROGRAMS, attempts=1)
    assert r.attempts == [(WRONG, S1)] and r.vote_pass2 == 0.5 and r.vote_gap == 0.5
    r = score_task(make_task(), PROGRAMS, method="arc25")  # only p1 is train-perfect
    assert r.attempts == [(S0, WRONG)] and r.vote_pass2 == 0.5


def test_score_task_full_test_oracle():
    r = score_task(make_task(), PROGRAMS + [("p5", [ERR, ERR, S0, S1])])
    assert r.test_oracle is True and r.train_oracle is True and r.n_valid == 3


def test_score_task_unknown_test_outputs():
    r = score_task(make_task(test_known=False), PROGRAMS)
    assert r.test_oracle is None and r.test_oracle_kaggle is None and r.vote_pass2 is None and r.vote_gap is None
    assert r.attempts == [(WRONG, S1), (S0, WRONG)]  # the vote needs no ground truth
    assert r.train_oracle is True


def test_score_task_without_programs():
    r = score_task(make_task(), [])
    assert (r.n_programs, r.valid_rate, r.mean_train_acc, r.train_oracle) == (0, 0.0, 0.0, False)
    assert (r.test_oracle, r.test_oracle_kaggle, r.vote_pass2, r.vote_gap, r.attempts) == (False, 0.0, 0.0, 0.0, [])


def test_score_task_votes_only_on_programs_that_pass_the_filters():
    """Spec §6 / §7.2: a program that returns its inputs (identity filter) and one that fails (invalid_grid) do not
    vote; the oracles, valid_rate and mean_train_acc still count them."""
    identity = ("def transform(grid):\n    return grid", [((1,),), ((2, 3),), ((5,),), ((7,),)])
    right = ("def transform(grid):\n    return [[v + 1 for v in r] for r in grid]", [T0, T1, S0, S1])
    r = score_task(make_task(), [identity] * 3 + [right, PROGRAMS[3]], c=0.0)  # c=0: plain majority
    assert r.attempts == [(S0, S1)] and r.vote_pass2 == 1.0
    assert r.n_voters == 1 and r.filtered["identity"] == 3 and r.filtered["invalid_grid"] == 1
    assert r.vote_pass2_unfiltered == 1.0  # attempt 2: the identity answer first, the right one second
    assert score_task(make_task(), [identity] * 3 + [right], attempts=1, c=0.0).vote_pass2_unfiltered == 0.0
    assert (r.n_programs, r.n_valid, r.test_oracle) == (5, 4, True)


def test_summarize_means_over_tasks_and_programs():
    results = [
        score_task(make_task(task_id="a"), PROGRAMS, attempts=1),  # pass2 0.5, oracle_kaggle 1.0
        score_task(make_task(test_known=False, task_id="b"), PROGRAMS),  # counted for train-side keys only
        score_task(make_task(task_id="c"), []),
    ]
    s = summarize(results)
    assert (s["n_tasks"], s["n_tasks_with_test"], s["n_programs"]) == (3, 2, 8)
    assert s["valid_rate"] == 6 / 8
    assert s["mean_train_acc"] == pytest.approx(0.5)
    assert s["train_oracle"] == pytest.approx(2 / 3)
    assert s["test_oracle"] == 0.0
    assert s["test_oracle_kaggle"] == 0.5  # mean(1.0, 0.0)
    assert s["vote_pass2"] == 0.25  # mean(0.5, 0.0)
    assert s["vote_gap"] == 0.25
    assert s["vote_pass2_unfiltered"] == 0.25  # every program of PROGRAMS that can vote passes the filters
    assert s["n_voters"] == 6 and s["filtered"] == {**dict.fromkeys(FILTERS, 0), "invalid_grid": 2}  # p4 twice


def test_summarize_without_known_test_outputs_or_tasks():
    s = summarize([score_task(make_task(test_known=False), PROGRAMS)])
    assert s["train_oracle"] == 1.0
    assert all(s[k] is None for k in ("test_oracle", "test_oracle_kaggle", "vote_pass2", "vote_gap"))
    empty = summarize([])
    assert empty["n_tasks"] == 0 and empty["valid_rate"] == 0.0 and empty["train_oracle"] is None


@pytest.mark.parametrize("method", ["weighted", "arc25"])
def test_programs_judged_once_score_any_subset_as_scoring_it_alone(method):
    """The search judges a task's programs once (scores per distinct outputs, a filter verdict per program), then
    scores every program and the sampled ones alone: the same results as scoring each list on its own."""
    import random

    from soar.scoring.metrics import judge
    from soar.scoring.programs import Programs

    rng = random.Random(0)
    programs = [(f"{code} #{i}", outs) for i in range(6) for code, outs in PROGRAMS]
    rng.shuffle(programs)
    task = make_task()
    judged = judge(task, Programs.group(programs))
    assert len(judged.programs.outputs) == len({tuple(outs) for _, outs in PROGRAMS}) < len(programs)
    for _ in range(20):
        keep = [rng.random() < 0.5 for _ in programs]
        alone = [p for p, k in zip(programs, keep) if k]
        assert score_task(task, judged.subset(keep), method=method) == score_task(task, alone, method=method)


def test_diversity_per_task_and_summary():
    """Distinct codes (surrounding whitespace ignored), distinct output tuples, and the most frequent code's share."""
    task = make_task()
    programs = [("a", [T0, T1, S0, S1]), (" a\n", [T0, T1, S0, S1]), ("a", [T0, T1, S0, S1]),
                ("b", [T0, T1, S0, S1]), ("c", [T0, WRONG, WRONG, S1]), ("d", [ERR, ERR, ERR, ERR])]
    r = score_task(task, programs)
    assert (r.n_distinct_codes, r.n_distinct_outputs, r.top_code_share) == (4, 3, 0.5)
    collapsed = score_task(task, [("a", [T0, T1, S0, S1])] * 4)
    assert (collapsed.n_distinct_codes, collapsed.n_distinct_outputs, collapsed.top_code_share) == (1, 1, 1.0)
    empty = score_task(make_task(task_id="e"), [])
    assert (empty.n_distinct_codes, empty.n_distinct_outputs, empty.top_code_share) == (0, 0, 0.0)
    s = summarize([r, collapsed, empty])
    assert (s["distinct_codes"], s["distinct_outputs"]) == (5 / 3, 4 / 3)
    assert s["top_code_share"] == 0.75  # a task without programs has no most frequent program
