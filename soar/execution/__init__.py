"""Safe, fast execution of untrusted `transform(grid)` programs.

    with Executor(workers=None, timeout_s=1.0, memory_mb=1024, chunk_size=128, isolate=True) as ex:
        results = ex.run([(source, inputs), ...], progress=None)  # one Output per input, per job

An Output is a CanonicalGrid (tuple of tuples of ints 0..9, 1..40 x 1..40) or a Failure with a FailureKind.
A program may return a list or tuple of rows or a 2-D numpy array; cells may be ints, bools, numpy integers,
or floats with an integral value (2.0, as SOAR accepts); anything else is `invalid_output` (see canonical.py).
Each input gets `timeout_s`; after a timeout the program's remaining inputs are charged `timeout` unrun.

How it is isolated: the coordinator (this process) spawns `workers` fork-servers, fresh interpreters with a
scrubbed environment (no API keys), pre-warmed with numpy and scipy, in a network namespace of their own.
A server forks one child per chunk of programs. The child points stdin/stdout/stderr at /dev/null, closes every
other descriptor but its result pipe, limits its address space (current size + memory_mb), file size (0), core
dumps and CPU time, and installs a seccomp filter that refuses sockets, new processes, signals to other
processes, and creating, writing or removing files. Then it runs each program in a fresh namespace, one alarm
per input, and streams one binary record per program. A canary of the shared interpreter state (builtins,
numpy, our own modules...) is checked after every program: on a change the child retires and a fresh one runs
the rest. The server SIGKILLs a child whose program overruns its deadline (inputs + 1) x timeout_s + 0.5 s,
charges that program, and forks again for the rest of the chunk. Nothing from the untrusted side is unpickled:
records are decoded strictly. `isolate=False` drops the namespace and seccomp, for measuring their cost.

A program can only falsify its own results (e.g. by writing to its result pipe); it cannot affect other
programs' results, the servers or the coordinator.
"""

from soar.execution.executor import Executor
from soar.execution.outcome import CanonicalGrid, Failure, FailureKind, Output

__all__ = ["CanonicalGrid", "Executor", "Failure", "FailureKind", "Output"]
