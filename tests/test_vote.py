"""Hand-checked examples of final answer selection (spec §6) and the Kaggle score."""
import pytest

from soar.execution.outcome import Failure, FailureKind
from soar.scoring import VOTE_METHODS, Candidate, kaggle_score, vote

X, Y, Z, W = ((1,),), ((2,),), ((3,),), ((4, 4), (4, 4))
ERR = Failure(FailureKind.EXCEPTION, "ValueError: boom")


def cand(*outs, h=1.0, code="def transform(g): return g"):
    return Candidate(tuple(outs), h, code)


def test_two_half_correct_programs_beat_one_perfect_program():
    # spec §6 example: 2 x (1 + 1000*0.5) = 1002 > 1 + 1000*1.0 = 1001
    cands = [cand(X, h=1.0), cand(Y, h=0.5), cand(Y, h=0.5)]
    assert vote(cands) == [(Y,), (X,)]


def test_top_attempts_by_weight():
    # weights: X 1, Y 201, Z 2 * 101 = 202
    cands = [cand(X, h=0.0), cand(Y, h=0.2), cand(Z, h=0.1), cand(Z, h=0.1)]
    assert vote(cands) == [(Z,), (Y,)]
    assert vote(cands, attempts=1) == [(Z,)]
    assert vote(cands, attempts=3) == [(Z,), (Y,), (X,)]


def test_c_zero_is_plain_majority():
    cands = [cand(X, h=1.0), cand(Y, h=0.0), cand(Y, h=0.0)]
    assert vote(cands, c=0.0) == [(Y,), (X,)]


def test_fewer_keys_than_attempts_and_no_candidates():
    assert vote([cand(X), cand(X)]) == [(X,)]
    assert vote([]) == []


def test_failures_do_not_vote():
    cands = [cand(ERR, h=1.0)] * 5 + [cand(X, h=0.0)]
    assert vote(cands) == [(X,)]
    assert vote([cand(ERR)]) == []


def test_multi_test_key_is_joint():
    # (X, Y): 2 * 501 = 1002 beats (X, Z): 1001; a per-input vote would not distinguish test 0 at all
    cands = [cand(X, Z, h=1.0), cand(X, Y, h=0.5), cand(X, Y, h=0.5)]
    assert vote(cands) == [(X, Y), (X, Z)]
    # a failure on one test input removes the whole joint key, not just that input
    assert vote([cand(X, ERR, h=1.0), cand(Z, W, h=0.0)]) == [(Z, W)]


def test_ties_go_to_first_seen_key_independent_of_summation_order():
    # naive float sums: 1.1+1.2+1.3 = 3.5999999999999996 < 1.3+1.2+1.1 = 3.6; exact sums tie
    a = [cand(X, h=h) for h in (0.1, 0.2, 0.3)]
    b = [cand(Y, h=h) for h in (0.3, 0.2, 0.1)]
    assert vote(a + b, c=1.0) == [(X,), (Y,)]
    assert vote(b + a, c=1.0) == [(Y,), (X,)]


def test_arc25_votes_among_train_perfect_programs_only():
    cands = [cand(Y, h=0.9)] * 10 + [cand(X), cand(X), cand(Y)]
    assert vote(cands, method="arc25") == [(X,), (Y,)]
    assert vote([cand(Y, h=0.9)], method="arc25") == []


def test_arc25_ties_go_to_shorter_code():
    long_x = cand(X, code="def transform(grid):\n    return [row[:] for row in grid]\n")
    short_y = cand(Y, code="def transform(g): return g")
    assert vote([long_x, short_y], method="arc25") == [(Y,), (X,)]
    # the key's shortest program counts: X also has a very short program now
    assert vote([long_x, short_y, cand(X, code="t=1")], method="arc25")[0] == (X,)
    assert vote([short_y, short_y, long_x, cand(X, code="t=1")], method="arc25")[0] == (X,)  # 2 == 2 votes


def test_unknown_method_names_allowed_methods():
    with pytest.raises(ValueError, match="weighted.*arc25"):
        vote([cand(X)], method="majority")
    assert VOTE_METHODS == ("weighted", "arc25")


def test_kaggle_score_is_fractional_per_test_input():
    expected = [[[1]], [[2]]]
    assert kaggle_score([(X, X), (Z, Y)], expected) == 1.0  # attempt 1 right on input 0, attempt 2 on input 1
    assert kaggle_score([(X, Z)], expected) == 0.5
    assert kaggle_score([(Z, Z), (ERR, Z)], expected) == 0.0
    assert kaggle_score([], expected) == 0.0
    assert kaggle_score([(X,)], [[[1]]]) == 1.0


def test_kaggle_score_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="attempt has 1 outputs, task has 2 test inputs"):
        kaggle_score([(X,)], [[[1]], [[2]]])
    with pytest.raises(ValueError, match="kaggle_score needs at least one test output"):
        kaggle_score([], [])
