"""Safe, fast execution of untrusted `transform(grid)` programs.

    with Executor(workers=None, timeout_s=1.0, memory_mb=1024, chunk_size=128, isolate=True) as ex:
        results = ex.run([(source, inputs), ...], progress=None)  # one Output per input, per job
    Executor.from_config(cfg.execution)  # the same, from conf/execution/*.yaml

An Output is a CanonicalGrid (tuple of tuples of ints 0..9, 1..40 x 1..40) or a Failure with a FailureKind.
The judge's rule (canonical.py) reads what a program returned by value: any list/tuple/array form of a grid of
ints 0..9 counts (integral floats such as 2.0 included, as SOAR accepts them); anything else is `invalid_output`.
A program runs as a plain Python file would: compiled on its own, in fresh globals holding only builtins
(`namespace="soar"` pre-binds np, scipy and math as SOAR does). It has one budget for the whole call, SOAR's
clamp(timeout_s x #inputs, timeout_min_s, timeout_max_s), counted in its own CPU time (`clock="cpu"`; a
wall-clock backstop of wall_factor budgets ends a sleeper), so verdicts do not depend on machine load; a program
that runs out of it is charged `timeout` on every input (budget.py).

How it is isolated: the coordinator (this process) spawns `workers` fork-servers, fresh interpreters with a
scrubbed environment (no API keys), pre-warmed with numpy and scipy, in a network namespace of their own.
A server forks one child per chunk of programs. The child points stdin/stdout/stderr at /dev/null, closes every
other descriptor but its result pipe, limits its address space (current size + memory_mb), file size (0), core
dumps and CPU time, and installs a seccomp filter that refuses sockets, new processes, signals to other
processes, and creating, writing or removing files. Then it runs each program in a fresh namespace under a timer
on the program's clock, and streams one binary record per program. After every program, settings a program may
change (recursion limit, numpy error mode, warning filters...) are put back, and a canary of the rest of the
shared interpreter state (builtins, numpy, our own modules...) is checked: on a change the child retires and a
fresh one runs the rest. The server reads the child's CPU and wall clocks, SIGKILLs a child whose program
overruns its budget (or backstop) by 0.5 s, charges that program, and forks again for the rest of the chunk.
Nothing from the untrusted side is unpickled: records are decoded strictly. `isolate=False` drops the namespace
and seccomp, for measuring their cost.

A program can only falsify its own results (e.g. by writing to its result pipe); it cannot affect other
programs' results, the servers or the coordinator.
"""

from soar.execution.budget import Budget
from soar.execution.executor import Executor
from soar.execution.outcome import MAX_SIDE, CanonicalGrid, Failure, FailureKind, Output

__all__ = ["MAX_SIDE", "Budget", "CanonicalGrid", "Executor", "Failure", "FailureKind", "Output"]
