"""Per-task results (oracles, vote pass@k, gap) and their aggregate over a split (spec §5.3, §6)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from soar.data.task import Task
from soar.execution.outcome import Output
from soar.scoring.program import score_program
from soar.scoring.vote import Candidate, Key, kaggle_score, vote


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    n_programs: int
    n_valid: int
    valid_rate: float  # n_valid / n_programs; 0.0 without programs
    mean_train_acc: float  # mean h over programs; 0.0 without programs
    train_oracle: bool  # some program is perfect on the train pairs
    test_oracle: bool | None  # some program gets ALL test outputs right; None: test outputs unknown
    test_oracle_kaggle: float | None  # per test input some program is right, averaged over test inputs
    vote_pass2: float | None  # Kaggle score of the voted attempts
    attempts: list[Key]  # the voted keys, best first
    vote_gap: float | None  # test_oracle_kaggle - vote_pass2 (>= 0)


def score_task(
    task: Task,
    programs: Sequence[tuple[str, Sequence[Output]]],
    attempts: int = 2,
    method: str = "weighted",
    c: float = 1000.0,
) -> TaskResult:
    """Score every (code, outputs-on-task.inputs) program of one task, vote, and compare to the oracles."""
    scores = [score_program(task, outs) for _, outs in programs]
    cands = [Candidate.from_outputs(task, code, outs, s.train_acc) for (code, outs), s in zip(programs, scores)]
    chosen = vote(cands, attempts=attempts, method=method, c=c)
    n = len(scores)
    expected = task.test_outputs
    if expected is None:
        test_oracle, oracle_kaggle, pass2, gap = None, None, None, None
    else:
        per_input = [any(s.correct_test[j] for s in scores) for j in range(len(expected))]  # type: ignore[index]
        test_oracle = any(all(s.correct_test) for s in scores)  # type: ignore[arg-type]
        oracle_kaggle = sum(per_input) / len(per_input)
        pass2 = kaggle_score(chosen, expected)
        gap = oracle_kaggle - pass2
    return TaskResult(
        task_id=task.id,
        n_programs=n,
        n_valid=sum(s.valid for s in scores),
        valid_rate=sum(s.valid for s in scores) / n if n else 0.0,
        mean_train_acc=sum(s.train_acc for s in scores) / n if n else 0.0,
        train_oracle=any(s.train_acc == 1.0 for s in scores),
        test_oracle=test_oracle,
        test_oracle_kaggle=oracle_kaggle,
        vote_pass2=pass2,
        attempts=chosen,
        vote_gap=gap,
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(results: Sequence[TaskResult]) -> dict[str, float | int | None]:
    """Aggregate task results. Task-level keys are means over tasks (fractions in 0..1); the test-side
    keys use only tasks whose test outputs are known (`n_tasks_with_test`) and are None if there are none.
    valid_rate and mean_train_acc are over programs (0.0 without programs)."""
    n_prog = sum(r.n_programs for r in results)
    known = [r for r in results if r.test_oracle is not None]
    return {
        "n_tasks": len(results),
        "n_tasks_with_test": len(known),
        "n_programs": n_prog,
        "valid_rate": sum(r.n_valid for r in results) / n_prog if n_prog else 0.0,
        "mean_train_acc": sum(r.mean_train_acc * r.n_programs for r in results) / n_prog if n_prog else 0.0,
        "train_oracle": _mean([float(r.train_oracle) for r in results]),
        "test_oracle": _mean([float(r.test_oracle) for r in known]),
        "test_oracle_kaggle": _mean([r.test_oracle_kaggle for r in known]),  # type: ignore[misc]
        "vote_pass2": _mean([r.vote_pass2 for r in known]),  # type: ignore[misc]
        "vote_gap": _mean([r.vote_gap for r in known]),  # type: ignore[misc]
    }
