"""Per-task data selection for fine-tuning (spec §8.1 sampling data, §8.2 refinement data, §10 test-time training).

Every function takes one task's (already filtered) archive rows and a numpy Generator, and is deterministic given
the generator's state. Rows are identified by their position in the list passed in (program ids may repeat when
an archive pools several runs), so selections return rows, never ids.

With `use_test=False` nothing here reads a row's `correct_test_input` or the task's test outputs; the
`greedy_diverse_mv` selection never reads them at all, whatever `use_test` says.

Decisions where the spec is silent:
- Greedy ranking: ties on (score, code length) are broken at random (the rows are shuffled first, as upstream).
  With `use_test` the score is the mean over [train flags + 1.1 x test flags], compared exactly in integers.
- greedy_diverse: the diverse half is drawn from the rows outside the greedy half, output-deduplicated (first kept
  in ranked order, so the shortest code of a duplicate group), and rows whose outputs equal a greedy pick's are
  left out (they would repeat a greedy task). The halves are N//2 and N - N//2; a short half is not refilled.
- greedy_diverse_mv (Algorithm 2, spec §8.1/§10): the top min(N//2, #keys) joint test-output keys by the weighted
  vote (`soar.scoring.vote`, weight = count + c * sum h, c = `scoring.c` as in the search's vote) share the N//2
  draws by a multinomial on their normalised weights; within a key programs are drawn with probability proportional
  to c h + 1e-10, without
  replacement, or with replacement when the key got more draws than it has programs, so a program may be repeated
  (each copy later gets its own pair shuffle). h = train accuracy.
- Refinement: children whose parent is outside PARENT_BINS[use_test] (e.g. a fully correct parent with use_test)
  are left out in both modes, and counted by the caller.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from soar.data.task import Task
from soar.execution.outcome import Failure, FailureKind, Output
from soar.hindsight.relabel import dedup_by_output, output_key
from soar.scoring.bins import PARENT_BINS
from soar.scoring.program import canonical
from soar.scoring.vote import DEFAULT_C, Candidate, vote

SAMPLE_SELECTIONS = ("correct", "uniform", "greedy", "greedy_diverse", "greedy_diverse_mv")
REFINE_SELECTIONS = ("uniform", "diverse")
# spec §8.1: a correct test pair weighs 1.1 train pairs in the greedy score; as integers (11/10), ties compare exactly
TRAIN_POINTS, TEST_POINTS = 10, 11
Row = Mapping[str, Any]
T = TypeVar("T")


def train_flags(row: Row) -> list[bool]:
    return [bool(f) for f in row["correct_train_input"]]


def train_accuracy(row: Row) -> float:
    flags = train_flags(row)
    return sum(flags) / len(flags) if flags else 0.0


def test_flags(row: Row, task: Task) -> list[bool]:
    """Per test input, whether the row's output is right: the stored flags, else computed from the task's test
    outputs. Only for use_test (ground truth allowed); raises if neither is known."""
    flags = row.get("correct_test_input")
    if flags is not None:
        return [bool(f) for f in flags]
    expected = task.test_outputs
    if expected is None:
        raise ValueError(f"task {task.id}: use_test needs test outputs or the rows' correct_test_input")
    return [g is not None and [list(r) for r in g] == e for g, e in zip(row["predicted_test_output"], expected)]


def fully_correct(row: Row, task: Task, use_test: bool) -> bool:
    """Correct on every train pair, and with `use_test` on every test input too."""
    train = train_flags(row)
    if not train or not all(train):
        return False
    return all(test_flags(row, task)) if use_test else True


def _score(row: Row, task: Task, use_test: bool) -> int:
    """The greedy score in integers: TRAIN_POINTS x #train correct (+ TEST_POINTS x #test correct with use_test).
    Within a task the number of pairs is fixed, so ordering by it orders by the spec's mean."""
    s = TRAIN_POINTS * sum(train_flags(row))
    return s + TEST_POINTS * sum(test_flags(row, task)) if use_test else s


def rank_greedy(rows: Sequence[Row], task: Task, use_test: bool, rng: np.random.Generator) -> list[Row]:
    """Rows best first: by greedy score (descending), then shorter code, remaining ties at random."""
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    return sorted(shuffled, key=lambda r: (-_score(r, task, use_test), len(r["code"] or "")))


def _draw(rows: Sequence[T], k: int, rng: np.random.Generator) -> list[T]:
    """min(k, len(rows)) rows uniformly without replacement, in draw order."""
    k = min(k, len(rows))
    return [rows[i] for i in rng.choice(len(rows), size=k, replace=False)] if k > 0 else []


def diverse_pool(rest: Sequence[Row], k: int, exclude: Sequence[Row] = ()) -> list[Row]:
    """Spec §8.1 step 3: candidates for the diverse half among `rest`, output-deduplicated (first kept) and without
    the outputs of `exclude`: 0 correct train pairs; if there are <= k of those, also exactly 1; if still <= k,
    also < 50% correct. Kept in `rest` order."""
    taken = {output_key(r) for r in exclude}
    unique = [r for r in dedup_by_output(rest) if output_key(r) not in taken]
    counts = [(sum(train_flags(r)), len(r["correct_train_input"])) for r in unique]
    chosen = [c == 0 for c, _ in counts]
    if sum(chosen) <= k:
        chosen = [ch or c == 1 for ch, (c, _) in zip(chosen, counts)]
    if sum(chosen) <= k:
        chosen = [ch or c < 0.5 * n for ch, (c, n) in zip(chosen, counts)]
    return [r for r, ch in zip(unique, chosen) if ch]


def _test_key(row: Row) -> tuple[Output, ...]:
    """The row's joint test outputs as vote keys (a failed output is a Failure, which never votes)."""
    return tuple(Failure(FailureKind.CRASH) if g is None else canonical(g) for g in row["predicted_test_output"])


def majority_vote_half(rows: Sequence[Row], k: int, rng: np.random.Generator, c: float = DEFAULT_C) -> list[Row]:
    """Algorithm 2's greedy half (no ground truth): k draws spread over the top vote keys (vote constant `c`), see
    module doc."""
    if k <= 0 or not rows:
        return []
    order = [rows[i] for i in rng.permutation(len(rows))]  # vote breaks exact ties by first seen
    cands = [Candidate(_test_key(r), train_accuracy(r), r["code"] or "") for r in order]
    groups: dict[Any, list[int]] = {}
    for i, cand in enumerate(cands):
        groups.setdefault(cand.test_outputs, []).append(i)
    keys = vote(cands, attempts=k, method="weighted", c=c)
    if not keys:  # every program has a failed test output: nothing votes
        return []
    weights = np.array([math.fsum(1.0 + c * cands[i].train_acc for i in groups[key]) for key in keys])
    draws = rng.multinomial(k, weights / weights.sum())
    picked: list[Row] = []
    for key, d in zip(keys, draws):
        members = groups[key]
        if d == 0:
            continue
        q = np.array([c * cands[i].train_acc + 1e-10 for i in members])
        idx = rng.choice(len(members), size=int(d), replace=bool(d > len(members)), p=q / q.sum())
        picked += [order[members[j]] for j in idx]
    return picked


def greedy_diverse(rows: Sequence[Row], task: Task, n: int, use_test: bool, rng: np.random.Generator,
                   majority_vote: bool = False, c: float = DEFAULT_C) -> tuple[list[Row], list[Row]]:
    """(greedy half, diverse half) of greedy_diverse, or of greedy_diverse_mv with `majority_vote` (which ranks
    and votes, with vote constant `c`, on train accuracy only and never looks at test correctness)."""
    half = n // 2
    ranked = rank_greedy(rows, task, use_test and not majority_vote, rng)
    if majority_vote:
        greedy = majority_vote_half(rows, half, rng, c)
        used = {id(r) for r in greedy}
        rest = [r for r in ranked if id(r) not in used]
    else:
        greedy, rest = ranked[:half], ranked[half:]
    k = n - half
    return greedy, _draw(diverse_pool(rest, k, exclude=greedy), k, rng)


def select_sampling(rows: Sequence[Row], task: Task, method: str, n: int, use_test: bool,
                    rng: np.random.Generator, c: float = DEFAULT_C) -> list[Row]:
    """At most `n` rows of one task for sampling data (spec §8.1); `method` is one of SAMPLE_SELECTIONS; `c` is the
    vote constant of greedy_diverse_mv."""
    if method not in SAMPLE_SELECTIONS:
        raise ValueError(f"unknown sample selection {method!r}; allowed: {', '.join(SAMPLE_SELECTIONS)}")
    if n <= 0 or not rows:
        return []
    if method == "correct":
        return _draw([r for r in rows if fully_correct(r, task, use_test)], n, rng)
    if method == "uniform":
        return _draw(rows, n, rng)
    if method == "greedy":
        return rank_greedy(rows, task, use_test, rng)[:n]
    greedy, diverse = greedy_diverse(rows, task, n, use_test, rng, majority_vote=method == "greedy_diverse_mv", c=c)
    return greedy + diverse


def select_refinement(pairs: Sequence[tuple[Row, Row, str]], method: str, n: int, use_test: bool,
                      rng: np.random.Generator) -> list[tuple[Row, Row, str]]:
    """At most `n` (child, parent, parent bin) triples of one task (spec §8.2). `uniform`: uniform without
    replacement. `diverse`: up to n // #bins from each non-empty parent bin, then the remaining slots one at a time
    from a random non-empty bin. Triples whose bin is not in PARENT_BINS[use_test] are ignored."""
    if method not in REFINE_SELECTIONS:
        raise ValueError(f"unknown refine selection {method!r}; allowed: {', '.join(REFINE_SELECTIONS)}")
    bins = PARENT_BINS[bool(use_test)]
    pairs = [p for p in pairs if p[2] in bins]
    if n <= 0 or not pairs:
        return []
    if method == "uniform":
        return _draw(pairs, n, rng)
    left = {b: [p for p in pairs if p[2] == b] for b in bins}
    left = {b: ps for b, ps in left.items() if ps}
    per = n // len(left)
    chosen: list[tuple[Row, Row, str]] = []
    for b in list(left):
        ps = left[b]
        idx = rng.choice(len(ps), size=min(per, len(ps)), replace=False).tolist()
        chosen += [ps[i] for i in idx]
        drawn = set(idx)
        left[b] = [p for i, p in enumerate(ps) if i not in drawn]
    while len(chosen) < n:
        open_bins = [b for b, ps in left.items() if ps]
        if not open_bins:
            break
        b = open_bins[int(rng.integers(len(open_bins)))]
        chosen.append(left[b].pop(int(rng.integers(len(left[b])))))
    return chosen
