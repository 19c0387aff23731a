"""Run one program on its inputs in the current process and encode the outputs as a wire record.

This is what a program child does for each program of its chunk (the benchmark also calls it in-process as the
unsafe baseline). A program runs as a plain Python file would: compiled on its own (no `from __future__` flag
of ours leaks in), in fresh module globals that hold only builtins (`namespace="plain"`); `namespace="soar"`
pre-binds np, scipy and math, as SOAR's worker globals have them. `random`/`np.random` are seeded with 0. Each
call of `transform` gets its own copy of the input. The program has one budget (`budget.py`) for the whole call,
armed as a timer on its clock (ITIMER_PROF: this process's CPU time; ITIMER_REAL for clock=wall); when it runs
out, every input is charged `timeout`.
"""

from __future__ import annotations

import builtins
import math
import random
import signal
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy
import scipy.ndimage  # noqa: F401  (pre-imported: ARC programs use scipy.ndimage.label & co.)

from soar.execution import sandbox, wire
from soar.execution.budget import over_budget
from soar.execution.canonical import InvalidOutput, canonicalise
from soar.execution.outcome import FailureKind

InputGrid = Sequence[Sequence[int]]
SOAR_PRELUDE = {"np": np, "scipy": scipy, "math": math}  # SOAR's worker initializer imports these
_TIMERS = {"cpu": (signal.ITIMER_PROF, signal.SIGPROF), "wall": (signal.ITIMER_REAL, signal.SIGALRM)}


class _Timeout(BaseException):
    """Raised by the budget timer; a BaseException so that `except Exception` in a program does not swallow it."""


def _on_timer(signum: int, frame: Any) -> None:
    raise _Timeout


def describe(e: BaseException) -> str:
    try:
        text = str(e)
    except BaseException:  # a hostile __str__
        text = "<unprintable>"
    return f"{type(e).__name__}: {text}"[: wire.MAX_MESSAGE]


class Ran(NamedTuple):
    parts: list[bytes]  # one wire part per input
    suspect: bool  # the program might have changed shared state: check the deep canary
    out_of_memory: bool  # the process should retire: its heap may be left fragmented


def run_program(source: str, inputs: Sequence[InputGrid], budget_s: float, clock: str = "cpu",
                namespace: str = "plain") -> Ran:  # fmt: skip
    timer, signum = _TIMERS[clock]
    signal.signal(signum, _on_timer)  # a previous program may have replaced the handler
    if "random" in source:
        random.seed(0)
        np.random.seed(0)
    n = len(inputs)
    try:
        code = compile(source, "<program>", "exec", dont_inherit=True)
    except Exception as e:  # SyntaxError, or ValueError for null bytes, RecursionError for deep nesting...
        return Ran([wire.failure_part(FailureKind.SYNTAX, describe(e))] * n, False, False)
    suspect = sandbox.suspect(code)
    module = {"__builtins__": builtins, "__name__": "program"}
    if namespace == "soar":
        module.update(SOAR_PRELUDE)
    try:
        try:
            signal.setitimer(timer, budget_s)
            parts, out_of_memory = _run(code, module, inputs)
        finally:
            signal.setitimer(timer, 0)
    except _Timeout:
        return Ran([wire.failure_part(FailureKind.TIMEOUT, over_budget(budget_s, clock))] * n, suspect, False)
    return Ran(parts, suspect, out_of_memory)


def _run(code: Any, module: dict[str, Any], inputs: Sequence[InputGrid]) -> tuple[list[bytes], bool]:
    """Define the program, then call its `transform` on each input: the wire parts, and whether memory ran out."""
    n = len(inputs)
    try:
        exec(code, module)
    except _Timeout:
        raise
    except MemoryError as e:
        return [wire.failure_part(FailureKind.MEMORY, describe(e))] * n, True
    except BaseException as e:
        return [wire.failure_part(FailureKind.EXCEPTION, describe(e))] * n, False
    transform = module.get("transform")
    if not callable(transform):
        return [wire.failure_part(FailureKind.NO_TRANSFORM)] * n, False
    calls = [_call(transform, grid) for grid in inputs]
    return [part for part, _ in calls], any(oom for _, oom in calls)


def _call(transform: Any, grid: InputGrid) -> tuple[bytes, bool]:
    """One call of `transform`: its wire part, and whether it ran out of memory."""
    try:
        return wire.grid_part(*canonicalise(transform([list(row) for row in grid]))), False
    except _Timeout:
        raise
    except InvalidOutput as e:
        return wire.failure_part(FailureKind.INVALID_OUTPUT, str(e)), False
    except MemoryError as e:
        return wire.failure_part(FailureKind.MEMORY, describe(e)), True
    except BaseException as e:
        return wire.failure_part(FailureKind.EXCEPTION, describe(e)), False


WARM_UP = """
import numpy as np
import scipy.ndimage

def transform(grid):
    a = np.array(grid)
    labels, n = scipy.ndimage.label(a > 0)
    return np.fliplr(np.where(labels > 0, 1 + np.random.randint(0, 2), a)).tolist()
"""


def warm_up() -> None:
    """Run one program so that lazy initialisation happens before any fork."""
    for clock in _TIMERS:
        run_program(WARM_UP, [[[0, 1], [2, 0]]], 10.0, clock)
