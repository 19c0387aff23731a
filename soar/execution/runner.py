"""Run one program on its inputs in the current process and encode the outputs as a wire record.

This is what a program child does for each program of its chunk (the benchmark also calls it in-process as the
unsafe baseline). Each program gets a fresh namespace with `np`, `numpy`, `scipy` and `math` pre-imported, as
SOAR's worker globals have them, and `random`/`np.random` seeded with 0. Each call of `transform` gets its own
copy of the input and a wall-clock budget of `timeout_s` (SIGALRM); after the first timeout the remaining
inputs are charged `timeout` without running, as SOAR fails a program as a whole when it runs out of time.
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
from soar.execution.canonical import InvalidOutput, canonicalise
from soar.execution.outcome import FailureKind

InputGrid = Sequence[Sequence[int]]
PRELUDE = {"np": np, "numpy": np, "scipy": scipy, "math": math}


class _Timeout(BaseException):
    """Raised by SIGALRM; a BaseException so that `except Exception` in a program does not swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def _arm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


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


def run_program(source: str, inputs: Sequence[InputGrid], timeout_s: float) -> Ran:
    signal.signal(signal.SIGALRM, _on_alarm)  # a previous program may have replaced the handler
    if "random" in source:
        random.seed(0)
        np.random.seed(0)
    n = len(inputs)
    try:
        code = compile(source, "<program>", "exec")
    except Exception as e:  # SyntaxError, or ValueError for null bytes, RecursionError for deep nesting...
        return Ran([wire.failure_part(FailureKind.SYNTAX, describe(e))] * n, False, False)
    suspect = sandbox.suspect(code)
    namespace = {"__builtins__": builtins, "__name__": "program", **PRELUDE}
    try:
        try:
            _arm(timeout_s)
            exec(code, namespace)
        finally:
            _disarm()
    except _Timeout:
        return Ran([wire.failure_part(FailureKind.TIMEOUT, "while defining the program")] * n, suspect, False)
    except MemoryError as e:
        return Ran([wire.failure_part(FailureKind.MEMORY, describe(e))] * n, suspect, True)
    except BaseException as e:
        return Ran([wire.failure_part(FailureKind.EXCEPTION, describe(e))] * n, suspect, False)
    transform = namespace.get("transform")
    if not callable(transform):
        return Ran([wire.failure_part(FailureKind.NO_TRANSFORM)] * n, suspect, False)
    parts: list[bytes] = []
    out_of_memory = False
    for grid in inputs:
        try:
            try:
                _arm(timeout_s)
                part, oom = _call(transform, grid)
            finally:
                _disarm()
        except _Timeout:
            break
        parts.append(part)
        out_of_memory |= oom
    timeout = wire.failure_part(FailureKind.TIMEOUT, f"over {timeout_s:g} s")
    return Ran(parts + [timeout] * (n - len(parts)), suspect, out_of_memory)


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
def transform(grid):
    a = np.array(grid)
    labels, n = scipy.ndimage.label(a > 0)
    return np.fliplr(np.where(labels > 0, 1 + np.random.randint(0, 2), a)).tolist()
"""


def warm_up() -> None:
    """Run one program so that lazy initialisation happens before any fork."""
    run_program(WARM_UP, [[[0, 1], [2, 0]]], 10.0)
