"""The coordinator: deduplicates jobs, chunks them, feeds the fork-servers and decodes their records.

It never forks a process that runs generated code and never sends expected outputs anywhere (it has none).
Each fork-server is a fresh interpreter (`server.py`) with a scrubbed environment, in its own session. The
coordinator talks to all of them through non-blocking pipes in one selector loop (no deadlock whatever the
sizes), keeps two chunks in flight per server, and replaces a server that dies (see `_replace`) or that was
left with work in flight by an interrupted `run`.

One module (~360 lines) on purpose: the coordinator is one state machine (servers, chunks in flight, the run's
results) driven by one selector loop; cut into files, each part would need the whole state.
"""

from __future__ import annotations

import inspect
import math
import os
import pickle
import select
import selectors
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soar.data.task import Grid
from soar.execution import wire
from soar.execution.budget import NAMESPACES, Budget
from soar.execution.outcome import Failure, FailureKind, Output

Job = tuple[str, Sequence[Grid]]
InputSet = tuple[tuple[tuple[int, ...], ...], ...]

IN_FLIGHT = 2  # chunks queued per server, so it never waits for the coordinator
START_TIMEOUT_S = 120.0
_KEEP_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH")
_PINNED_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# The server imports its own modules only, not the soar package (whose __init__ may pull in an LLM stack):
# empty stand-ins for the packages point the import system at their folders.
_BOOT = """import sys, types
sys.path[:] = {path!r}
for name, folder in {packages!r}:
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__path__ = [folder]
from soar.execution.server import main
main(sys.argv[1:])
"""
_warned: set[str] = set()


@dataclass(eq=False)
class _Chunk:
    uids: list[int]  # unique jobs, in the order the server reports them
    payload: bytes
    started: bool = False  # the server said it began this chunk
    done: int = 0  # records received


@dataclass(eq=False)
class _Server:
    proc: subprocess.Popen[bytes]
    inbox: bytearray = field(default_factory=bytearray)  # bytes read, not yet a whole frame
    outbox: bytearray = field(default_factory=bytearray)  # bytes to write
    chunks: deque[_Chunk] = field(default_factory=deque)

    @property
    def rfd(self) -> int:
        return self.proc.stdout.fileno()  # type: ignore[union-attr]

    @property
    def wfd(self) -> int:
        return self.proc.stdin.fileno()  # type: ignore[union-attr]


@dataclass
class _Run:
    """The state of one `Executor.run`: unique jobs ("work", by uid), their input sets and results."""

    work: list[tuple[str, int]]  # (source, input set index)
    sets: list[InputSet]
    copies: list[int]  # per uid: how many jobs it answers
    progress: Callable[[int], None] | None
    results: list[list[Output] | None] = field(init=False)
    pending: deque[_Chunk] = field(default_factory=deque)
    left: int = field(init=False)
    max_payload: int = field(init=False)  # of a record

    def __post_init__(self) -> None:
        self.results = [None] * len(self.work)
        self.left = len(self.work)
        self.max_payload = wire.max_record(max(map(len, self.sets), default=0))

    def n_inputs(self, uid: int) -> int:
        return len(self.sets[self.work[uid][1]])

    def finish(self, uid: int, outs: list[Output]) -> None:
        self.results[uid] = outs
        self.left -= 1
        if self.progress:
            self.progress(self.copies[uid])


class _ServerDied(Exception):
    pass


class Executor:
    """Runs untrusted `transform` programs on grids; see the package docstring. The arguments are the keys of
    conf/execution/*.yaml (`from_config`); the budget's are documented in `budget.py`."""

    def __init__(self, workers: int | None = None, timeout_s: float = 1.0, timeout_min_s: float = 2.0,
                 timeout_max_s: float = 20.0, clock: str = "cpu", wall_factor: float = 5.0, memory_mb: int = 1024,
                 chunk_size: int = 128, isolate: bool = True, namespace: str = "plain") -> None:  # fmt: skip
        self.budget = Budget(timeout_s, timeout_min_s, timeout_max_s, clock, wall_factor)
        for key, value in (("workers", workers or 1), ("memory_mb", memory_mb), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                or_null = " or null" * (key == "workers")
                raise ValueError(f"execution.{key}={value!r}: must be an integer >= 1{or_null}")
        if namespace not in NAMESPACES:
            raise ValueError(f"execution.namespace={namespace!r}: must be one of {', '.join(NAMESPACES)}")
        self.workers = workers or len(os.sched_getaffinity(0)) or 1  # the cores this job may use (SLURM)
        self.memory_mb = memory_mb
        self.chunk_size = chunk_size
        self.isolate = isolate
        self.namespace = namespace
        self.programs_run = 0  # distinct (source, inputs) executions so far: deduplication shows here
        self._retired_cpu_s = 0.0  # CPU time of the servers already stopped
        self._servers: list[_Server] = []
        self._sel = selectors.DefaultSelector()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Executor:
        """An executor from an `execution` config node (conf/execution/*.yaml); `name` and `batch_size` are the
        caller's. Unknown or invalid keys raise ValueError naming the key."""
        params = {k: v for k, v in cfg.items() if k not in ("name", "batch_size")}
        allowed = inspect.signature(cls).parameters
        for key in params:
            if key not in allowed:
                raise ValueError(f"execution.{key}: unknown key; the executor's are {', '.join(allowed)}")
        return cls(**params)

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the fork-servers that are missing (all of them at first); they start up in parallel."""
        for proc in [self._spawn() for _ in range(self.workers - len(self._servers))]:
            self._add(proc)

    def close(self) -> None:
        for server in list(self._servers):
            self._forget(server)

    def server_pids(self) -> list[int]:
        return [s.proc.pid for s in self._servers]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) its servers and their program children have used so far. A chunk's child
        counts once its chunk is over (the server reaps it then), so between `run` calls the count is complete."""
        return self._retired_cpu_s + sum(_cpu_seconds(s.proc.pid) for s in self._servers)

    def run(self, jobs: Sequence[Job], progress: Callable[[int], None] | None = None) -> list[list[Output]]:
        """One list of outputs per job, one output per input, in order. Identical jobs run once."""
        self.start()
        work, sets, job_uids = _deduplicate(jobs)
        copies = [0] * len(work)
        for uid in job_uids:
            copies[uid] += 1
        run = _Run(work, sets, copies, progress)
        self.programs_run += len(work)
        run.pending.extend(self._chunks(run, sorted(range(len(work)), key=lambda uid: work[uid][1])))
        try:
            self._drive(run)
        except BaseException:  # e.g. KeyboardInterrupt: servers with work in flight would answer the next run
            for server in [s for s in self._servers if s.chunks]:
                self._forget(server, kill=True)
            raise
        return [list(run.results[uid]) for uid in job_uids]  # type: ignore[arg-type]

    def _drive(self, run: _Run) -> None:
        """Feed the servers and collect their records until every unique job of `run` has its outputs."""
        while run.left:
            self._dispatch(run)
            for key, events in self._sel.select():
                if key.data not in self._servers:
                    continue  # replaced earlier in this round
                try:
                    if events & selectors.EVENT_WRITE:
                        self._send(key.data)
                    if events & selectors.EVENT_READ:
                        _receive(key.data, run)
                except _ServerDied:
                    self._replace(key.data, run)

    def _dispatch(self, run: _Run) -> None:
        """Give every server up to IN_FLIGHT chunks, including the servers that replace dead ones."""
        settled = False
        while not settled:
            settled = True
            for server in list(self._servers):
                while run.pending and len(server.chunks) < IN_FLIGHT:
                    chunk = run.pending.popleft()
                    server.chunks.append(chunk)
                    server.outbox += chunk.payload
                try:
                    self._send(server)
                except _ServerDied:
                    self._replace(server, run)
                    settled = False

    def _chunks(self, run: _Run, uids: list[int]) -> list[_Chunk]:
        """Cut unique jobs (sorted by input set) into chunks, smaller ones when there is little work."""
        size = max(1, min(self.chunk_size, math.ceil(len(uids) / (IN_FLIGHT * self.workers))))
        chunks = []
        for i in range(0, len(uids), size):
            part = uids[i : i + size]
            local: dict[int, int] = {}  # input set index in the run -> in the chunk
            for uid in part:
                local.setdefault(run.work[uid][1], len(local))
            jobs = [(run.work[uid][0], local[run.work[uid][1]]) for uid in part]
            chunk = (self.budget, self.namespace, [run.sets[k] for k in local], jobs)  # a server.Chunk
            payload = pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL)
            chunks.append(_Chunk(part, wire.frame(payload)))
        return chunks

    def _spawn(self) -> subprocess.Popen[bytes]:
        here = Path(__file__).resolve().parent
        boot = _BOOT.format(
            path=[p or os.getcwd() for p in sys.path],
            packages=[("soar", str(here.parent)), ("soar.execution", str(here))],
        )
        env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV or k.startswith("LC_")} | _PINNED_ENV
        return subprocess.Popen(
            [sys.executable, "-s", "-c", boot, "1" if self.isolate else "0", str(self.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/", start_new_session=True,
        )  # fmt: skip

    def _add(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for a spawned server's hello, then put it to work."""
        server = _Server(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        hello: list[bytes] = []
        while not hello:
            ready = select.select([server.rfd], [], [], max(0.0, deadline - time.monotonic()))[0]
            data = os.read(server.rfd, 1 << 16) if ready else b""
            if not data:
                _stop(proc)
                raise RuntimeError(f"an executor server failed to start (status {proc.returncode})")
            server.inbox += data
            hello = wire.split_frames(server.inbox, 1 << 16)[0]
        for note in filter(None, hello[0][1:].decode().split(";")):
            if note not in _warned:
                _warned.add(note)
                warnings.warn(f"soar executor: {note}", RuntimeWarning, stacklevel=4)
        os.set_blocking(server.wfd, False)
        self._sel.register(server.rfd, selectors.EVENT_READ, server)
        self._servers.append(server)

    def _send(self, server: _Server) -> None:
        """Write what the pipe takes now; watch it for room while anything is left."""
        if server.outbox:
            try:
                del server.outbox[: os.write(server.wfd, server.outbox)]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                raise _ServerDied from None
        watched = server.wfd in self._sel.get_map()
        if server.outbox and not watched:
            self._sel.register(server.wfd, selectors.EVENT_WRITE, server)
        elif watched and not server.outbox:
            self._sel.unregister(server.wfd)

    def _forget(self, server: _Server, kill: bool = False) -> None:
        for fd in (server.rfd, server.wfd):
            if fd in self._sel.get_map():
                self._sel.unregister(fd)
        self._servers.remove(server)
        self._retired_cpu_s += _cpu_seconds(server.proc.pid)
        if kill:
            server.proc.kill()  # its child follows (parent-death signal)
        _stop(server.proc)

    def _replace(self, server: _Server, run: _Run) -> None:
        """Restart a dead server and queue its unfinished work again.

        The server forwards records in batches, so when it dies in a chunk it had started, the culprit is only
        known if one program was left: that one is charged `crash`; otherwise they are retried one per chunk.
        """
        self._forget(server)
        requeue = []
        if server.chunks and server.chunks[0].started:
            current = server.chunks.popleft()
            left = current.uids[current.done :]
            if len(left) == 1:
                run.finish(left[0], [Failure(FailureKind.CRASH, "the executor server died")] * run.n_inputs(left[0]))
            else:
                requeue += [chunk for uid in left for chunk in self._chunks(run, [uid])]
        requeue += self._chunks(run, [uid for chunk in server.chunks for uid in chunk.uids[chunk.done :]])
        run.pending.extendleft(reversed(requeue))
        self._add(self._spawn())


def _deduplicate(jobs: Sequence[Job]) -> tuple[list[tuple[str, int]], list[InputSet], list[int]]:
    """Unique (source, input set) pairs, the distinct input sets, and each job's index into the pairs."""
    work: dict[tuple[str, int], int] = {}
    sets: dict[InputSet, int] = {}
    by_identity: dict[tuple[int, ...], int] = {}  # the same grid objects: skip rebuilding the key
    alive = []  # keeps the inputs referenced, so that their ids stay unique during the loop
    job_uids = []
    for source, inputs in jobs:
        ident = tuple(map(id, inputs))
        k = by_identity.get(ident)
        if k is None:
            alive.append(inputs)
            key = tuple(tuple(tuple(int(v) for v in row) for row in grid) for grid in inputs)
            k = by_identity[ident] = sets.setdefault(key, len(sets))
        job_uids.append(work.setdefault((source, k), len(work)))
    return list(work), list(sets), job_uids


def _receive(server: _Server, run: _Run) -> None:
    data = os.read(server.rfd, 1 << 20)
    if not data:
        raise _ServerDied
    server.inbox += data
    frames, broken = wire.split_frames(server.inbox, run.max_payload)
    for payload in frames:
        chunk = server.chunks[0] if server.chunks else None
        if chunk is not None and payload == wire.STARTED:
            chunk.started = True
            continue
        if chunk is None or wire.record_pos(payload) != chunk.done:
            raise _ServerDied  # a broken server cannot be trusted to continue
        uid = chunk.uids[chunk.done]
        try:
            outs = wire.decode_outputs(payload, run.n_inputs(uid))
        except ValueError as e:
            outs = [Failure(FailureKind.CRASH, str(e))] * run.n_inputs(uid)
        chunk.done += 1
        if chunk.done == len(chunk.uids):
            server.chunks.popleft()
        run.finish(uid, outs)
    if broken:
        raise _ServerDied


def _cpu_seconds(pid: int) -> float:
    """A live process's CPU time with that of its reaped children (/proc/<pid>/stat: utime, stime, cutime, cstime);
    0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3 of proc(5)
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close a server's pipes (it exits at end of input, killing its child); kill it if it lingers."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe:
            pipe.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
