"""The executor, for real: fork-servers, confined children, hostile programs. No mocks."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from soar.execution import Executor, Failure, FailureKind

TIMEOUT_S = 0.5
GRID = [[1, 2, 0], [0, 3, 4]]
FLIPPED = ((0, 2, 1), (4, 3, 0))
FLIP = "def transform(grid):\n    return [row[::-1] for row in grid]\n"

# Good programs that break if numpy, builtins or the import system were poisoned by an earlier program.
GOOD = [
    FLIP,
    "def transform(grid):\n    return np.fliplr(np.array(grid)).tolist()\n",
    "import numpy\ndef transform(grid):\n    w = len(grid[0])\n"
    "    return [[row[w - 1 - i] for i in range(len(row))] for row in grid]\n",
    "import collections\ndef transform(grid):\n    return [list(collections.deque(reversed(r))) for r in grid]\n",
]


def children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return [int(c) for t in tasks for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except FileNotFoundError:  # it exited meanwhile
        return []


def descendants(pid: int) -> list[int]:
    out = []
    for c in children(pid):
        out += [c, *descendants(c)]
    return out


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=2, timeout_s=TIMEOUT_S, memory_mb=256, chunk_size=16) as executor:
        yield executor


def run_one(ex: Executor, source: str, inputs=(GRID,)) -> list:
    return ex.run([(source, list(inputs))])[0]


def kinds(outs: list) -> set:
    return {o.kind if isinstance(o, Failure) else "grid" for o in outs}


def test_correct_and_wrong_programs(ex):
    wrong = "def transform(grid):\n    return grid\n"
    outs = ex.run([(FLIP, [GRID, [[5]]]), (wrong, [GRID])])
    assert outs == [[FLIPPED, ((5,),)], [((1, 2, 0), (0, 3, 4))]]


@pytest.mark.parametrize(
    "source, kind, message",
    [
        ("def transform(grid)\n    return grid\n", FailureKind.SYNTAX, "SyntaxError"),
        ("def solve(grid):\n    return grid\n", FailureKind.NO_TRANSFORM, ""),
        ("transform = 3\n", FailureKind.NO_TRANSFORM, ""),
        ("def transform(grid):\n    return 1 / 0\n", FailureKind.EXCEPTION, "ZeroDivisionError: division by zero"),
        ("raise ValueError('at definition')\n", FailureKind.EXCEPTION, "ValueError: at definition"),
        ("def transform(grid):\n    return transform(grid)\n", FailureKind.EXCEPTION, "RecursionError"),
        ("def transform(grid):\n    while True:\n        pass\n", FailureKind.TIMEOUT, ""),
        ("def transform(grid):\n    return [[0] * 10**10]\n", FailureKind.MEMORY, "MemoryError"),
        ("def transform(grid):\n    return np.zeros((10**6, 10**6))\n", FailureKind.MEMORY, "MemoryError"),
        ("def transform(grid):\n    return 'grid'\n", FailureKind.INVALID_OUTPUT, ""),
        ("import ctypes\ndef transform(grid):\n    ctypes.string_at(0)\n", FailureKind.CRASH, "SIGSEGV"),
        ("import os\ndef transform(grid):\n    os._exit(0)\n", FailureKind.CRASH, "status 0"),
        ("import sys\ndef transform(grid):\n    sys.exit()\n", FailureKind.EXCEPTION, "SystemExit"),
        ("while True:\n    pass\n", FailureKind.TIMEOUT, "while defining"),
    ],
)
def test_failure_kinds(ex, source, kind, message):
    (out,) = run_one(ex, source)
    assert isinstance(out, Failure) and out.kind == kind and message in out.message, out


def test_timeout_then_remaining_inputs_charged(ex):
    slow_on_big = "def transform(grid):\n    while len(grid) > 1:\n        pass\n    return grid\n"
    assert run_one(ex, slow_on_big, [[[1]], GRID, [[2]]]) == [
        ((1,),),
        Failure(FailureKind.TIMEOUT, f"over {TIMEOUT_S:g} s"),
        Failure(FailureKind.TIMEOUT, f"over {TIMEOUT_S:g} s"),
    ]


@pytest.mark.parametrize(
    "expr",
    [
        "np.array(grid)",
        "np.array(grid, dtype=np.uint8)",
        "np.array(grid, dtype=float)",
        "np.array(grid) > -1",  # bool -> 1
        "[np.array(r) for r in grid]",
        "[[np.int64(v) for v in r] for r in grid]",
        "tuple(tuple(r) for r in grid)",
        "[[float(v) for v in r] for r in grid]",
        "np.array(grid).T.T",
    ],
)
def test_outputs_canonicalised(ex, expr):
    expected = ((1, 1, 1), (1, 1, 1)) if ">" in expr else ((1, 2, 0), (0, 3, 4))
    (out,) = run_one(ex, f"def transform(grid):\n    return {expr}\n")
    assert out == expected
    assert type(out) is tuple and all(type(r) is tuple and all(type(v) is int for v in r) for r in out)


@pytest.mark.parametrize(
    "expr",
    [
        "[[1, 2], [3]]",  # ragged
        "[[1.5]]",
        "[[10]]",
        "[[-1]]",
        "[[1] * 41] * 41",
        "[[1] * 41]",
        "[]",
        "[[]]",
        "np.zeros((0, 3))",
        "None",
        "'12'",
        "['12']",
        "[['1']]",
        "[[float('nan')]]",
        "np.array([[np.inf]])",
        "np.zeros((2, 2, 2))",
        "np.array([[1, 'a']], dtype=object)",
        "[[Eq()]]",
        "Eq()",
        "L([[1]])",
        "[L([1])]",
        "[[2**70]]",
        "np.array([[1 + 1j]])",
    ],
)
def test_invalid_outputs_rejected(ex, expr):
    source = (
        "class Eq:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
        "    def __index__(self):\n        return 1\n"
        "class L(list):\n    pass\n"
        f"def transform(grid):\n    return {expr}\n"
    )
    (out,) = run_one(ex, source)
    assert isinstance(out, Failure) and out.kind == FailureKind.INVALID_OUTPUT, out


def test_deduplication(ex):
    before = ex.programs_run
    other = "def transform(grid):\n    return [[7]]\n"
    jobs = [(FLIP, [GRID])] * 5 + [(other, [GRID]), (FLIP, [[[1, 2]]])] + [(FLIP, [[list(r) for r in GRID]])] * 3
    outs = ex.run(jobs)
    assert ex.programs_run - before == 3
    assert outs == [[FLIPPED]] * 5 + [[((7,),)], [((2, 1),)]] + [[FLIPPED]] * 3


def test_progress_counts_jobs(ex):
    seen = []
    jobs = [(FLIP + f"# {i % 7}", [GRID]) for i in range(40)]
    ex.run(jobs, progress=seen.append)
    assert sum(seen) == 40


def test_empty(ex):
    assert ex.run([]) == []
    assert ex.run([(FLIP, [])]) == [[]]


def test_deterministic_randomness(ex):
    source = "import random\ndef transform(grid):\n    return [[random.randint(0, 9), int(np.random.randint(10))]]\n"
    first = run_one(ex, source)
    assert run_one(ex, source + "# again") == first


HOSTILE = {
    "kill parent": "import os\ndef transform(grid):\n    os.kill(os.getppid(), 9)\n    return grid\n",
    "kill group": "import os\ndef transform(grid):\n    os.killpg(0, 9)\n    return grid\n",
    "fork": "import os\ndef transform(grid):\n    if os.fork() == 0:\n        while True:\n            pass\n"
    "    return grid\n",
    "thread": (
        "import threading\ndef transform(grid):\n    threading.Thread(target=lambda: None).start()\n    return grid\n"
    ),
    "swallow alarm": (
        "def transform(grid):\n    while True:\n        try:\n            while True:\n                pass\n"
        "        except BaseException:\n            pass\n"
    ),
    "ignore SIGTERM": (
        "import signal\ndef transform(grid):\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass\n"
    ),
    "C loop": "def transform(grid):\n    return sum(range(10**12))\n",
    "memory bomb": "def transform(grid):\n    x = []\n    while True:\n        x.append(np.empty(10**7))\n",
    "stdout flood": (
        "import sys, os\ndef transform(grid):\n    sys.stdout.write('x' * 10**8)\n    os.write(1, b'R' * 10**5)\n"
        "    return grid\n"
    ),
    "write fd 3..": (
        "import os\ndef transform(grid):\n    for fd in range(3, 64):\n        try:\n"
        "            os.write(fd, b'garbage')\n        except OSError:\n            pass\n    return grid\n"
    ),
    "segfault": "import ctypes\ndef transform(grid):\n    return ctypes.string_at(0)\n",
    "poison numpy": "def transform(grid):\n    np.fliplr = lambda a: a\n    return grid\n",
    "poison builtins": "import builtins\ndef transform(grid):\n    builtins.len = lambda x: 1\n    return grid\n",
    "poison sys.modules": (
        "import sys\ndef transform(grid):\n    sys.modules['numpy'] = None\n    sys.modules['collections'] = None\n"
        "    return grid\n"
    ),
    "poison quietly": "def transform(grid):\n    vars(np)['fliplr'] = lambda a: a\n    return grid\n",
    "sys.exit": "import sys\ndef transform(grid):\n    sys.exit(0)\n",
    "os._exit": "import os\ndef transform(grid):\n    os._exit(0)\n",
    "exec shell": "import os\ndef transform(grid):\n    os.system('touch /tmp/soar_pwned')\n    return grid\n",
    "chdir": "import os\ndef transform(grid):\n    os.chdir('/tmp')\n    return grid\n",
}


def test_hostile_programs_do_not_affect_others():
    jobs, good = [], []
    for i, hostile in enumerate(HOSTILE.values()):
        for j in range(3):
            good.append(len(jobs))
            jobs.append((GOOD[(i + j) % len(GOOD)] + f"# {i} {j}", [GRID]))
        jobs.append((hostile, [GRID]))
    for j in range(8):
        good.append(len(jobs))
        jobs.append((GOOD[j % len(GOOD)] + f"# tail {j}", [GRID]))
    with Executor(workers=2, timeout_s=1.0, chunk_size=16) as ex:
        start = time.monotonic()
        outs = ex.run(jobs)
        assert time.monotonic() - start < 20
        assert all(children(pid) == [] for pid in ex.server_pids())
    assert [outs[i] for i in good] == [[FLIPPED]] * len(good)
    by_name = dict(zip(HOSTILE, (outs[i + 3] for i in range(0, len(jobs) - 8, 4)), strict=True))
    assert kinds(by_name["kill parent"]) == {FailureKind.EXCEPTION}  # seccomp: EPERM
    assert kinds(by_name["fork"]) == {FailureKind.EXCEPTION}
    assert kinds(by_name["thread"]) == {FailureKind.EXCEPTION}
    for name in ("swallow alarm", "ignore SIGTERM", "C loop"):
        assert kinds(by_name[name]) == {FailureKind.TIMEOUT}, name
    assert kinds(by_name["memory bomb"]) == {FailureKind.MEMORY}
    assert kinds(by_name["segfault"]) == {FailureKind.CRASH}
    assert by_name["stdout flood"] == [((1, 2, 0), (0, 3, 4))]
    assert not os.path.exists("/tmp/soar_pwned")


def test_files_not_written(ex, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    attempts = [
        f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')",
        f"open({str(victim)!r}, 'a').write('x')",
        f"open({str(victim)!r}, 'r+').write('x')",
        f"os.remove({str(victim)!r})",
        f"os.rename({str(victim)!r}, {str(tmp_path / 'moved')!r})",
        f"os.mkdir({str(tmp_path / 'dir')!r})",
        f"os.symlink('/etc/passwd', {str(tmp_path / 'link')!r})",
        f"os.chmod({str(victim)!r}, 0o777)",
    ]
    jobs = [(f"import os\ndef transform(grid):\n    {a}\n    return grid\n", [GRID]) for a in attempts]
    for outs in ex.run(jobs):
        assert kinds(outs) == {FailureKind.EXCEPTION}, outs
        assert "PermissionError" in outs[0].message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]
    assert victim.read_text() == "keep"
    reader = f"def transform(grid):\n    return [[len(open({str(victim)!r}).read())]]\n"
    assert run_one(ex, reader) == [((4,),)]  # reading is allowed


def test_sockets_refused(ex):
    attempts = [
        "socket.socket()",
        "socket.create_connection(('127.0.0.1', 9))",
        "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
        "socket.getaddrinfo('example.com', 80)",
    ]
    jobs = [(f"import socket\ndef transform(grid):\n    {a}\n    return grid\n", [GRID]) for a in attempts]
    for outs in ex.run(jobs):
        assert kinds(outs) == {FailureKind.EXCEPTION}, outs


def test_network_namespace_is_empty(ex):
    source = "def transform(grid):\n    return [[len(open('/proc/self/net/dev').read().splitlines()) - 2]]\n"
    assert run_one(ex, source) == [((1,),)]  # loopback only


def test_poisoning_is_contained_within_a_child():
    poison = [
        "def transform(grid):\n    np.fliplr = lambda a: a\n    return grid\n",
        "def transform(grid):\n    vars(np)['fliplr'] = lambda a: a\n    return grid\n",
        "import numpy\ndef transform(grid):\n    numpy.seterr(all='raise')\n    return grid\n",
        "import sys\ndef transform(grid):\n    sys.setrecursionlimit(50)\n    return grid\n",
    ]
    check = (
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def transform(grid):\n    np.array([1.0]) / 0\n    depth(100)\n    return np.fliplr(np.array(grid))\n"
    )
    jobs = [(p if i % 2 == 0 else check + f"# {i}", [GRID]) for i, p in enumerate(x for q in poison for x in (q, q))]
    with Executor(workers=1, timeout_s=TIMEOUT_S, chunk_size=64) as fresh:
        outs = fresh.run(jobs)
    assert outs[1::2] == [[FLIPPED]] * len(poison)


def test_environment_scrubbed(monkeypatch):
    monkeypatch.setenv("SOAR_TEST_SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    source = (
        "import os\ndef transform(grid):\n"
        "    leaked = any('hunter2' in v or 'sk-secret' in v for v in os.environ.values())\n"
        "    return [[int(leaked), int(os.environ.get('OPENBLAS_NUM_THREADS') == '1'),"
        " int(os.environ.get('PYTHONHASHSEED') == '0')]]\n"
    )
    with Executor(workers=1, timeout_s=TIMEOUT_S) as fresh:
        assert run_one(fresh, source) == [((0, 1, 1),)]


def test_no_process_left_behind():
    before = set(children(os.getpid()))
    with Executor(workers=2, timeout_s=TIMEOUT_S) as fresh:
        servers = fresh.server_pids()
        fresh.run([(HOSTILE["fork"], [GRID]), (HOSTILE["C loop"], [GRID]), (FLIP, [GRID])])
        assert all(descendants(pid) == [] for pid in servers)
    assert set(children(os.getpid())) == before
    assert not any(os.path.exists(f"/proc/{pid}") for pid in servers)


def test_dead_servers_are_restarted(ex):
    for attempt in range(5):
        for pid in ex.server_pids():
            os.kill(pid, signal.SIGKILL)
        jobs = [(GOOD[i % len(GOOD)] + f"# restart {attempt} {i}", [GRID]) for i in range(20)]
        assert ex.run(jobs) == [[FLIPPED]] * 20  # nothing was running: nobody is charged


def test_without_isolation_a_program_killing_its_server_is_contained():
    jobs = [(GOOD[i % len(GOOD)] + f"# {i}", [GRID]) for i in range(12)]
    jobs[5] = (HOSTILE["kill parent"], [GRID])
    jobs[7] = ("import os\ndef transform(grid):\n    os.fork()\n    return [[5]]\n", [GRID])  # both return
    jobs[8] = (HOSTILE["fork"], [GRID])
    with Executor(workers=1, timeout_s=TIMEOUT_S, chunk_size=4, isolate=False) as fresh:
        outs = fresh.run(jobs)
        assert descendants(fresh.server_pids()[0]) == []
    assert outs[5] == [Failure(FailureKind.CRASH, "the executor server died")]
    assert outs[7] == [((5,),)]
    assert [o for i, o in enumerate(outs) if i not in (5, 7, 8)] == [[FLIPPED]] * 9


def test_numpy_inputs_accepted(ex):
    assert ex.run([(FLIP, [np.array(GRID)])]) == [[FLIPPED]]


def test_interrupted_run_leaves_a_usable_executor(ex):
    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    slow = "def transform(grid):\n    while True:\n        pass\n"
    with pytest.raises(KeyboardInterrupt):
        ex.run([(FLIP + "# interrupted", [GRID])] + [(slow + f"# {i}", [GRID]) for i in range(8)], progress=interrupt)
    jobs = [(GOOD[i % len(GOOD)] + f"# after interrupt {i}", [GRID]) for i in range(10)]
    assert ex.run(jobs) == [[FLIPPED]] * 10
