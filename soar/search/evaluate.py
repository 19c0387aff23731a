"""Run programs on their tasks in the sandbox and turn them into scored archive rows."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from soar.archive import program_row
from soar.data import Task
from soar.execution import Executor
from soar.scoring import score_program


def evaluate(
    executor: Executor,
    tasks: dict[str, Task],
    programs: Sequence[dict[str, Any]],
    *,
    kind: str,
    iteration: int,
    model: str,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Archive rows for `programs` (dicts with task_id, code, program_id; optional parent_id, text, model, kind
    (default `kind`); any other key becomes an extra column). The executor never sees an expected output.
    `exec_cpu_s`: the executor CPU time that the batch took, shared among its programs by the inputs each ran on
    (measured per batch, not per program)."""
    cpu_before = executor.cpu_seconds()
    outputs = executor.run([(p["code"], tasks[p["task_id"]].inputs) for p in programs], progress=progress)
    cpu_s = executor.cpu_seconds() - cpu_before
    n_inputs = sum(len(tasks[p["task_id"]].inputs) for p in programs)
    rows = []
    for p, outs in zip(programs, outputs):
        task = tasks[p["task_id"]]
        known = ("task_id", "code", "program_id", "parent_id", "text", "model", "kind")
        extra = {k: v for k, v in p.items() if k not in known}
        extra["exec_cpu_s"] = cpu_s * len(task.inputs) / n_inputs
        rows.append(
            program_row(
                task, p["code"], outs, score_program(task, outs),
                program_id=p["program_id"], kind=p.get("kind") or kind, iteration=iteration,
                model=p.get("model") or model, parent_id=p.get("parent_id"), text=p.get("text"), **extra,
            )
        )
    return rows
