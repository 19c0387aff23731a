"""The fork-server: a fresh interpreter that forks one confined child per chunk of programs and supervises it.

Started by the coordinator (`executor.py`) with a scrubbed environment. It reads chunks (pickled by the trusted
coordinator: budget, namespace, input sets, (source, input set) jobs) from stdin, and writes one wire record per
program to stdout, in chunk order. A child runs the chunk's programs from a given position, streaming one record
per program; each program's own timer (`runner.py`) stops it when its budget runs out. The server is the second
line: it reads the child's CPU clock and the wall clock every tick, and when the current program has spent its
budget plus a grace (CPU, or wall with clock=wall) or its wall-clock backstop plus the grace, it SIGKILLs the
child's process group and charges `timeout`; a RLIMIT_CPU over the whole chunk is the third. On a crash (signal,
unexpected exit, garbage on the pipe) it charges `crash`; on exit code RETIRE (canary tripped, memory exhausted or
grown) it charges nobody. It then forks a new child for the rest of the chunk.

One module (~310 lines) on purpose: it is the fresh interpreter the coordinator boots, and its supervision (ticks,
clocks, kills, verdicts) is one loop around one child; the confinement itself is in sandbox.py and runner.py.
"""

from __future__ import annotations

import fcntl
import gc
import math
import os
import pickle
import resource
import select
import signal
import sys
import time
from typing import NamedTuple

from soar.execution import runner, sandbox, wire
from soar.execution.budget import Budget, over_budget, over_wall_backstop
from soar.execution.outcome import FailureKind

GRACE_S = 0.5  # beyond a program's budget, for its own timer to stop it first
TICK_S = 0.005  # how often the server collects a child's records and looks at its clocks
RETIRE = 3
FAILED = 4


class Chunk(NamedTuple):
    """What the coordinator sends: programs to run, as (source, index into input_sets), and how."""

    budget: Budget
    namespace: str  # budget.NAMESPACES
    input_sets: list[tuple[tuple[tuple[int, ...], ...], ...]]
    jobs: list[tuple[str, int]]


class Server:
    def __init__(self, isolate: bool, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        # Protocol on private fds; 0 and 1 become /dev/null so no stray print corrupts it.
        self.proto_in, self.proto_out = os.dup(0), os.dup(1)
        self.null = os.open(os.devnull, os.O_RDWR)
        os.dup2(self.null, 0)
        os.dup2(self.null, 1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)  # orphans of children come back here to be reaped
        notes = []
        self.bpf: bytes | None = None
        if isolate:
            note = sandbox.enter_network_namespace()
            notes += [note] if note else []
            try:
                self.bpf = sandbox.compile_seccomp()
                _probe(self.bpf)
            except Exception as e:
                self.bpf = None
                notes.append(f"no seccomp filter ({runner.describe(e)}); programs are not confined")
        runner.warm_up()
        self.canary = sandbox.Canary()
        gc.freeze()  # children then leave the inherited objects alone: fewer copy-on-write faults
        wire.write_all(self.proto_out, wire.frame(b"H" + ";".join(notes).encode()))

    def serve(self) -> None:
        while (payload := wire.read_frame(self.proto_in)) is not None:
            chunk = Chunk(*pickle.loads(payload))  # from the trusted coordinator
            wire.write_all(self.proto_out, wire.frame(wire.STARTED))
            pos = 0
            while pos < len(chunk.jobs):
                pos = self._run_child(chunk, pos)

    def _run_child(self, chunk: Chunk, start: int) -> int:
        """Fork a child for chunk.jobs[start:], relay its records; return the position to continue from."""
        jobs, budget = chunk.jobs, chunk.budget
        n_inputs = [len(chunk.input_sets[k]) for _, k in jobs]
        limits = [budget.seconds(n) for n in n_inputs]
        walls = [budget.wall_seconds(n) for n in n_inputs]

        def overrun(pos: int, wall_used: float, cpu_used: float) -> str | None:
            """Why the program at `pos` must be stopped now (its budget plus grace is spent), if it must."""
            if budget.clock == "cpu" and cpu_used > limits[pos] + GRACE_S:
                return over_budget(limits[pos], "cpu")
            if wall_used > walls[pos] + GRACE_S:
                return over_budget(limits[pos], "wall") if budget.clock == "wall" else over_wall_backstop(walls[pos])
            return None

        # Records go through `data`, read every TICK_S: the child's writes wake nobody. `alive` is never written;
        # its end of file wakes the server as soon as the child exits.
        data_r, data_w = os.pipe()
        alive_r, alive_w = os.pipe()
        try:
            fcntl.fcntl(data_w, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # above this host's pipe-max-size: the child waits a tick more often
        os.set_blocking(data_r, False)
        pid = os.fork()
        if pid == 0:
            os.close(data_r)
            os.close(alive_r)
            cpu_s = math.ceil(sum(limits[start:]) + GRACE_S * (len(jobs) - start)) + 1  # backstop for the chunk
            self._child(chunk, start, limits, (data_w, alive_w), cpu_s)
        os.close(data_w)
        os.close(alive_w)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or is gone
        clock = _cpu_clock(pid)
        pos, buf, exited, last = start, bytearray(), False, b""
        began, began_cpu = time.monotonic(), 0.0  # when the program at `pos` began, by each clock (about)
        verdict: tuple[FailureKind, str] | None = None
        while pos < len(jobs) and not exited:
            now, cpu = time.monotonic(), _cpu_time(clock)
            why = overrun(pos, now - began, cpu - began_cpu)
            if why:
                verdict = FailureKind.TIMEOUT, why
                break
            exited = bool(select.select([alive_r], [], [], TICK_S)[0])
            garbage = exited and os.read(alive_r, 1 << 16) != b""  # not end of file: a program wrote there
            buf += _read_available(data_r)
            new, records, broken = _check(buf, pos, n_inputs)
            if new < len(jobs):
                wire.write_all(self.proto_out, records)
            else:
                last = records  # sent once the child is reaped: when the chunk's results are in, it is gone
            if new > pos:
                pos, began, began_cpu = new, time.monotonic(), _cpu_time(clock)
            if broken or garbage:
                verdict = FailureKind.CRASH, "garbage on the result pipe"
                break
        # A child that closed `alive` itself may still run: it gets until the wall-clock limit of its program.
        wait_until = began + walls[pos] + GRACE_S if verdict is None and pos < len(jobs) else 0.0
        status, killed = _finish(pid, wait_until)
        os.close(data_r)
        os.close(alive_r)
        if self.bpf is None:
            _kill_strays()
        if pos >= len(jobs):
            wire.write_all(self.proto_out, last)
            return pos
        if verdict is None and killed:
            verdict = FailureKind.TIMEOUT, overrun(pos, math.inf, 0.0) or ""
        if verdict is None:
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == RETIRE:
                return pos
            verdict = _verdict(status, limits[pos])
        self._emit(pos, *verdict, n_inputs[pos])
        return pos + 1

    def _emit(self, pos: int, kind: FailureKind, message: str, n: int) -> None:
        """Write the record of a program that produced none: the same failure for each of its `n` inputs."""
        wire.write_all(self.proto_out, wire.frame(wire.record(pos, [wire.failure_part(kind, message)] * n)))

    def _child(self, chunk: Chunk, start: int, limits: list[float], pipes: tuple[int, int], cpu_s: int) -> None:
        """Body of a program child: confine itself, run jobs[start:], write records to pipes[0]; never returns."""
        code, me = FAILED, os.getpid()
        write = os.write  # bound now: a program may replace os.write
        try:
            os.setpgid(0, 0)
            sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
            for fd in (0, 1, 2):
                os.dup2(self.null, fd)
            low, high = sorted(pipes)
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
            sandbox.limit_resources(self.memory_mb, cpu_s)
            if self.bpf is not None:
                sandbox.load_seccomp(self.bpf)
            # A program that grew the heap by a quarter of the budget leaves the next ones less: retire after it.
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + self.memory_mb * 256
            for pos in range(start, len(chunk.jobs)):
                source, k = chunk.jobs[pos]
                ran = runner.run_program(source, chunk.input_sets[k], limits[pos], chunk.budget.clock, chunk.namespace)
                if os.getpid() != me:  # a copy forked by the program (possible without seccomp): not us
                    os._exit(0)
                data = memoryview(wire.frame(wire.record(pos, ran.parts)))
                while data:
                    data = data[write(pipes[0], data) :]
                heavy = ran.out_of_memory or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > peak_kb
                if heavy or self.canary.check(deep=ran.suspect):
                    code = RETIRE
                    break
            else:
                code = 0
        finally:
            os._exit(code)


def _probe(bpf: bytes) -> None:
    """Check in a throw-away child that this kernel accepts the filter."""
    pid = os.fork()
    if pid == 0:
        try:
            sandbox.load_seccomp(bpf)
            os._exit(0)
        finally:
            os._exit(1)
    if os.waitpid(pid, 0)[1] != 0:
        raise OSError("the kernel refused the filter")


def _verdict(status: int, limit: float) -> tuple[FailureKind, str]:
    """What to charge a program whose child ended unexpectedly (`limit`: its budget)."""
    if os.WIFEXITED(status):
        return FailureKind.CRASH, f"exited with status {os.WEXITSTATUS(status)}"
    sig = os.WTERMSIG(status)
    if sig == signal.SIGXCPU:  # the chunk's RLIMIT_CPU: this program went on after its own budget
        return FailureKind.TIMEOUT, over_budget(limit, "cpu")
    return FailureKind.CRASH, f"killed by {signal.Signals(sig).name}"


def _check(buf: bytearray, pos: int, n_inputs: list[int]) -> tuple[int, bytes, bool]:
    """Take the well-formed records at the head of `buf`, in order from `pos`: return the next position,
    the records (framed), and whether garbage follows them (written by the program at that position)."""
    frames, broken = wire.split_frames(buf, wire.max_record(max(n_inputs[pos:])))
    good: list[bytes] = []
    for payload in frames:
        if wire.record_pos(payload) != pos + len(good):
            broken = True
            break
        good.append(wire.frame(payload))
    return pos + len(good), b"".join(good), broken


def _kill_strays() -> None:
    """Without seccomp a program can fork and leave the group: kill and reap every remaining descendant
    (this server is their subreaper, so they are its children now)."""
    path = f"/proc/self/task/{os.getpid()}/children"
    strays = [int(pid) for pid in open(path).read().split()] if os.path.exists(path) else []
    for pid in strays:
        _kill(pid)
    for pid in strays:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _cpu_clock(pid: int) -> int:
    """The id of the clock of a process's CPU time (user + system, all threads), as clock_getcpuclockid(3)
    makes it: readable from here with time.clock_gettime."""
    return (~pid << 3) | 2  # CPUCLOCK_SCHED of the process


def _cpu_time(clock: int) -> float:
    try:
        return time.clock_gettime(clock)
    except OSError:  # the child is gone: its end of file on `alive` says so
        return 0.0


def _read_available(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _finish(pid: int, wait_until: float) -> tuple[int, bool]:
    """Let a child exit on its own until `wait_until` (monotonic), else SIGKILL its group; reap it.

    Returns its wait status and whether it had to be killed. The group is killed in both cases, for any
    descendants (the kernel does not reuse a group id while a member lives)."""
    while time.monotonic() < wait_until:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _killpg(pid)
            return status, False
        time.sleep(0.001)
    _killpg(pid)
    return os.waitpid(pid, 0)[1], True


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def main(argv: list[str]) -> None:
    try:
        Server(isolate=argv[0] == "1", memory_mb=int(argv[1])).serve()
    except BrokenPipeError:  # the coordinator is gone
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
