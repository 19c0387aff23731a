"""Final answer selection (spec §6): weighted majority vote over joint test outputs, and the Kaggle score.

The caller decides who votes: soar.scoring.metrics passes only the programs that pass SOAR's filters (spec §7.2).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from soar.data.task import Grid, Task
from soar.execution.outcome import CanonicalGrid, Failure, Output
from soar.scoring.program import is_correct

VOTE_METHODS = ("weighted", "arc25")
DEFAULT_C = 1000.0  # weight per program 1 + c * h: `scoring.c`; also the training data vote (soar.hindsight)
Key = tuple[CanonicalGrid, ...]


class Candidate(NamedTuple):
    test_outputs: tuple[Output, ...]  # one per test input: the vote key
    train_acc: float  # h in [0, 1]
    code: str

    @classmethod
    def from_outputs(cls, task: Task, code: str, outputs: Sequence[Output], train_acc: float) -> Candidate:
        """Build from a program's outputs on all of `task.inputs` (train then test)."""
        return cls(tuple(outputs[len(task.train):]), train_acc, code)


def _voting_key(c: Candidate) -> Key | None:
    """The joint test-output key, or None when some test output failed (such programs do not vote)."""
    if any(isinstance(o, Failure) for o in c.test_outputs):
        return None
    return c.test_outputs  # type: ignore[return-value]


def vote(candidates: Sequence[Candidate], attempts: int = 2, method: str = "weighted",
         c: float = DEFAULT_C) -> list[Key]:
    """Pick up to `attempts` joint test-output keys, best first.

    weighted: weight(key) = sum over its programs of (1 + c*h)  (SOAR give_n_majority_vote_v2).
    arc25:    only train-perfect programs (h == 1) vote, one vote each; ties go to the key whose
              shortest program is shorter.
    Keys containing a Failure never vote. Remaining ties go to the key seen first in `candidates`.
    """
    index: dict[Key, int] = {}  # insertion order = first-seen order
    ballots = []
    for cand in candidates:
        key = _voting_key(cand)
        if key is not None:
            ballots.append((index.setdefault(key, len(index)), cand.train_acc, cand.code))
    return tally(list(index), ballots, attempts, method, c)


def tally(keys: Sequence[Key], ballots: Iterable[tuple[int, float, str]], attempts: int = 2,
          method: str = "weighted", c: float = DEFAULT_C) -> list[Key]:
    """`vote` on ballots given as (index into `keys`, h, code), in candidate order: a caller that has grouped its
    programs by outputs already (soar.scoring.programs) hashes each distinct key once, not once per program."""
    if method not in VOTE_METHODS:
        raise ValueError(f"unknown vote method {method!r}; allowed: {', '.join(VOTE_METHODS)}")
    groups: dict[int, list[tuple[float, str]]] = {}  # insertion order = first-seen order
    for k, h, code in ballots:
        if method == "weighted" or h == 1.0:
            groups.setdefault(k, []).append((h, code))
    if method == "weighted":
        # fsum: exactly rounded, so equal multisets of h give equal weights whatever the order
        rank = {k: (-math.fsum(1.0 + c * h for h, _ in ps), 0) for k, ps in groups.items()}
    else:
        rank = {k: (-len(ps), min(len(code) for _, code in ps)) for k, ps in groups.items()}
    order = sorted(groups, key=rank.__getitem__)  # stable: first-seen breaks remaining ties
    return [keys[k] for k in order[:attempts]]


def kaggle_score(attempts: Sequence[Sequence[Output]], test_outputs: Sequence[Grid]) -> float:
    """Mean over test inputs j of [some attempt's j-th output equals the expected j-th output]."""
    if not test_outputs:
        raise ValueError("kaggle_score needs at least one test output")
    for a in attempts:
        if len(a) != len(test_outputs):
            raise ValueError(f"attempt has {len(a)} outputs, task has {len(test_outputs)} test inputs")
    hits = [any(is_correct(a[j], e) for a in attempts) for j, e in enumerate(test_outputs)]
    return sum(hits) / len(hits)
