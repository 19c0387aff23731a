"""Per-task results (oracles, vote pass@k, gap) and their aggregate over a split (spec §5.3, §6).

Decisions:
- Who votes: only the programs that pass SOAR's filters (`soar.scoring.filters.keep_program`, spec §7.2), as in
  Alg. 3 (execute, filter, vote) and SOAR's evaluation. This is the paper's behaviour, so there is no switch. The
  filters read the code and the program's own outputs only, never a test output.
- `vote_pass2_unfiltered`: the same vote over every program (what soar reported before it filtered). Kept as a
  labelled diagnostic: it shows how much the filters move the headline, and compares with older soar runs.
- Oracles, valid_rate and mean_train_acc describe the search, so they count every program: the spec (§5.3, §6)
  defines the oracle as "some program" is right and never restricts it to the voters. A right program that a filter
  rejects (an overlong line; its answer written in its code, as `return [[1]] if ... else [[7]]` on a task with 1x1
  outputs; an all-zero test answer) counts for the oracle, not the vote, so vote_gap = oracle - vote counts it as
  lost by the answer selection. The gap stays >= 0.
- The filters run once per program (once per distinct outputs for the outputs-only part); both votes share them.
- Diversity counts every program: distinct codes (exact text, surrounding whitespace ignored: cheap at paper size;
  the near-duplicate key of soar.hindsight is for training data), distinct output tuples (train and test, a failure
  being one output), and the share of the task's programs that are its most frequent code (1.0 = collapse).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from soar.data.task import Task
from soar.execution.outcome import Failure, Output
from soar.scoring.filters import FILTERS, keep_programs
from soar.scoring.program import ProgramScore, score_program
from soar.scoring.programs import Programs
from soar.scoring.vote import DEFAULT_C, Key, kaggle_score, tally


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    n_programs: int
    n_valid: int
    valid_rate: float  # n_valid / n_programs; 0.0 without programs
    mean_train_acc: float  # mean h over programs; 0.0 without programs
    n_voters: int  # programs that pass the filters of spec §7.2: only these vote
    filtered: dict[str, int]  # programs rejected, by the first filter (FILTERS order) that rejects them
    train_oracle: bool  # some program is perfect on the train pairs
    test_oracle: bool | None  # some program gets ALL test outputs right; None: test outputs unknown
    test_oracle_kaggle: float | None  # per test input some program is right, averaged over test inputs
    vote_pass2: float | None  # Kaggle score of the voted attempts (filtered programs only)
    attempts: list[Key]  # the voted keys, best first
    vote_gap: float | None  # test_oracle_kaggle - vote_pass2 (>= 0)
    vote_pass2_unfiltered: float | None  # diagnostic: the same vote over every program
    n_distinct_codes: int  # diversity (module doc): distinct code texts
    n_distinct_outputs: int  # distinct tuples of outputs (train then test)
    top_code_share: float  # programs with the most frequent code / n_programs; 0.0 without programs


@dataclass(frozen=True)
class Judged:
    """One task's programs with the per-program facts the results need: the score of each distinct outputs and the
    filter verdict of each program. Work done once, then aggregated over any subset (all programs, sampled ones)."""

    programs: Programs
    scores: dict[int, ProgramScore]  # per behaviour (an index into programs.outputs)
    verdicts: list[str | None]  # per program: None if it passes the filters, else the rejecting filter

    def subset(self, keep: Sequence[bool]) -> Judged:
        """The programs where `keep` is true (scores are shared)."""
        return Judged(self.programs.subset(keep), self.scores, [v for v, k in zip(self.verdicts, keep) if k])


def judge(task: Task, programs: Sequence[tuple[str, Sequence[Output]]] | Programs) -> Judged:
    """Score each distinct outputs and filter each program of `task` (a `Programs`, or (code, outputs) pairs)."""
    if not isinstance(programs, Programs):
        programs = Programs.group(programs)
    scores = {b: score_program(task, programs.outputs[b]) for b in sorted(set(programs.behaviour))}
    return Judged(programs, scores, keep_programs(task, programs))


def score_task(
    task: Task,
    programs: Sequence[tuple[str, Sequence[Output]]] | Programs | Judged,
    attempts: int = 2,
    method: str = "weighted",
    c: float = DEFAULT_C,
) -> TaskResult:
    """Score every (code, outputs-on-task.inputs) program of one task (or a `Programs`, or a `Judged`), filter,
    vote, and compare to the oracles. Programs with the same outputs are scored once."""
    judged = programs if isinstance(programs, Judged) else judge(task, programs)
    programs, verdicts = judged.programs, judged.verdicts
    used = sorted(set(programs.behaviour))
    known = {b: judged.scores[b] for b in used}
    n_train = len(task.train)
    keys: dict[Key, int] = {}  # the distinct voting keys: each behaviour's test outputs, unless one failed
    key_of = {}
    for b in used:
        test_out = programs.outputs[b][n_train:]
        if not any(isinstance(o, Failure) for o in test_out):
            key_of[b] = keys.setdefault(test_out, len(keys))  # type: ignore[arg-type]
    ballots, voters = [], []  # (key, h, code) of every program whose test outputs can vote / of the filtered ones
    for code, b, verdict in zip(programs.codes, programs.behaviour, verdicts):
        if b in key_of:
            ballots.append((key_of[b], known[b].train_acc, code))
            if verdict is None:
                voters.append(ballots[-1])
    keys_list = list(keys)
    chosen = tally(keys_list, voters, attempts=attempts, method=method, c=c)
    scores = [known[b] for b in programs.behaviour]
    n = len(scores)
    n_voters = sum(v is None for v in verdicts)
    codes = Counter((code or "").strip() for code in programs.codes)
    expected = task.test_outputs
    if expected is None:
        test_oracle, oracle_kaggle, pass2, gap, unfiltered = None, None, None, None, None
    else:
        per_input = [any(known[b].correct_test[j] for b in used) for j in range(len(expected))]  # type: ignore[index]
        test_oracle = any(all(known[b].correct_test) for b in used)  # type: ignore[arg-type]
        oracle_kaggle = sum(per_input) / len(per_input)
        pass2 = kaggle_score(chosen, expected)
        gap = oracle_kaggle - pass2
        unfiltered = kaggle_score(tally(keys_list, ballots, attempts=attempts, method=method, c=c), expected)
    return TaskResult(
        task_id=task.id,
        n_programs=n,
        n_valid=sum(s.valid for s in scores),
        valid_rate=sum(s.valid for s in scores) / n if n else 0.0,
        mean_train_acc=sum(s.train_acc for s in scores) / n if n else 0.0,
        n_voters=n_voters,
        filtered={f: verdicts.count(f) for f in FILTERS},
        train_oracle=any(known[b].train_acc == 1.0 for b in used),
        test_oracle=test_oracle,
        test_oracle_kaggle=oracle_kaggle,
        vote_pass2=pass2,
        attempts=chosen,
        vote_gap=gap,
        vote_pass2_unfiltered=unfiltered,
        n_distinct_codes=len(codes),
        n_distinct_outputs=len(used),
        top_code_share=max(codes.values()) / n if n else 0.0,
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(results: Sequence[TaskResult]) -> dict[str, Any]:
    """Aggregate task results. Task-level keys are means over tasks (fractions in 0..1); the test-side
    keys use only tasks whose test outputs are known (`n_tasks_with_test`) and are None if there are none.
    valid_rate and mean_train_acc are over programs (0.0 without programs); n_voters and filtered count programs.
    Diversity: distinct codes and outputs are means per task, top_code_share the mean over tasks with programs."""
    n_prog = sum(r.n_programs for r in results)
    known = [r for r in results if r.test_oracle is not None]
    searched = [r for r in results if r.n_programs]
    return {
        "n_tasks": len(results),
        "n_tasks_with_test": len(known),
        "n_programs": n_prog,
        "n_voters": sum(r.n_voters for r in results),
        "filtered": {f: sum(r.filtered[f] for r in results) for f in FILTERS},
        "valid_rate": sum(r.n_valid for r in results) / n_prog if n_prog else 0.0,
        "mean_train_acc": sum(r.mean_train_acc * r.n_programs for r in results) / n_prog if n_prog else 0.0,
        "train_oracle": _mean([float(r.train_oracle) for r in results]),
        "test_oracle": _mean([float(bool(r.test_oracle)) for r in known]),
        "test_oracle_kaggle": _mean([r.test_oracle_kaggle for r in known]),  # type: ignore[misc]
        "vote_pass2": _mean([r.vote_pass2 for r in known]),  # type: ignore[misc]
        "vote_gap": _mean([r.vote_gap for r in known]),  # type: ignore[misc]
        "vote_pass2_unfiltered": _mean([r.vote_pass2_unfiltered for r in known]),  # type: ignore[misc]
        "distinct_codes": _mean([r.n_distinct_codes for r in results]),
        "distinct_outputs": _mean([r.n_distinct_outputs for r in results]),
        "top_code_share": _mean([r.top_code_share for r in searched]),
    }
