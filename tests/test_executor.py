"""The executor, for real: fork-servers, confined children, hostile programs. No mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from soar.execution import Budget, Executor, Failure, FailureKind
from soar.execution.budget import over_budget

TIMEOUT_S = 0.5  # CPU seconds per input
TIMEOUT_MIN_S = 0.5  # SOAR's floor is 2 s: lowered to keep the runaway programs here short
GRID = [[1, 2, 0], [0, 3, 4]]
FLIPPED = ((0, 2, 1), (4, 3, 0))
FLIP = "def transform(grid):\n    return [row[::-1] for row in grid]\n"

# Good programs that break if numpy, builtins or the import system were poisoned by an earlier program.
GOOD = [
    FLIP,
    "import numpy as np\ndef transform(grid):\n    return np.fliplr(np.array(grid)).tolist()\n",
    "import numpy as np\ndef transform(grid):\n    w = len(grid[0])\n"
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
    with Executor(workers=2, timeout_s=TIMEOUT_S, timeout_min_s=TIMEOUT_MIN_S, memory_mb=256, chunk_size=16) as executor:
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
        ("import numpy as np\ndef transform(grid):\n    return np.zeros((10**6, 10**6))\n", FailureKind.MEMORY, "MemoryError"),
        ("def transform(grid):\n    return 'grid'\n", FailureKind.INVALID_OUTPUT, ""),
        ("import ctypes\ndef transform(grid):\n    ctypes.string_at(0)\n", FailureKind.CRASH, "SIGSEGV"),
        ("import os\ndef transform(grid):\n    os._exit(0)\n", FailureKind.CRASH, "status 0"),
        ("import sys\ndef transform(grid):\n    sys.exit()\n", FailureKind.EXCEPTION, "SystemExit"),
        ("while True:\n    pass\n", FailureKind.TIMEOUT, "CPU budget"),  # the budget covers the definitions too
    ],
)
def test_failure_kinds(ex, source, kind, message):
    (out,) = run_one(ex, source)
    assert isinstance(out, Failure) and out.kind == kind and message in out.message, out


def test_timeout_charges_every_input(ex):
    """One budget per program (SOAR): a program that runs out of it is charged `timeout` on every input, the
    inputs it finished included, with one message, whichever line stopped it (the in-child timer, a kill)."""
    slow_on_big = "def transform(grid):\n    while len(grid) > 1:\n        pass\n    return grid\n"
    c_loop_on_big = "def transform(grid):\n    return grid if len(grid) == 1 else sum(range(10**12))\n"
    budget = max(TIMEOUT_S * 3, TIMEOUT_MIN_S)
    for source in (slow_on_big, c_loop_on_big):
        assert run_one(ex, source, [[[1]], GRID, [[2]]]) == [Failure(FailureKind.TIMEOUT, over_budget(budget, "cpu"))] * 3


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
    (out,) = run_one(ex, f"import numpy as np\ndef transform(grid):\n    return {expr}\n")
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
        "[[2**70]]",
        "np.array([[1 + 1j]])",
    ],
)
def test_invalid_outputs_rejected(ex, expr):
    source = (
        "import numpy as np\n"
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
    source = "import random\nimport numpy as np\ndef transform(grid):\n    return [[random.randint(0, 9), int(np.random.randint(10))]]\n"
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
    "disarm timer": (
        "import signal\ndef transform(grid):\n    signal.signal(signal.SIGPROF, signal.SIG_IGN)\n"
        "    signal.setitimer(signal.ITIMER_PROF, 0)\n    while True:\n        pass\n"
    ),
    "memory bomb": "import numpy as np\ndef transform(grid):\n    x = []\n    while True:\n        x.append(np.empty(10**7))\n",
    "stdout flood": (
        "import sys, os\ndef transform(grid):\n    sys.stdout.write('x' * 10**8)\n    os.write(1, b'R' * 10**5)\n"
        "    return grid\n"
    ),
    "write fd 3..": (
        "import os\ndef transform(grid):\n    for fd in range(3, 64):\n        try:\n"
        "            os.write(fd, b'garbage')\n        except OSError:\n            pass\n    return grid\n"
    ),
    "segfault": "import ctypes\ndef transform(grid):\n    return ctypes.string_at(0)\n",
    "poison numpy": "import numpy as np\ndef transform(grid):\n    np.fliplr = lambda a: a\n    return grid\n",
    "poison builtins": "import builtins\ndef transform(grid):\n    builtins.len = lambda x: 1\n    return grid\n",
    "poison sys.modules": (
        "import sys\ndef transform(grid):\n    sys.modules['numpy'] = None\n    sys.modules['collections'] = None\n"
        "    return grid\n"
    ),
    "poison quietly": "import numpy as np\ndef transform(grid):\n    vars(np)['fliplr'] = lambda a: a\n    return grid\n",
    "sys.exit": "import sys\ndef transform(grid):\n    sys.exit(0)\n",
    "os._exit": "import os\ndef transform(grid):\n    os._exit(0)\n",
    "exec shell": "import os\ndef transform(grid):\n    os.system('touch /tmp/soar_pwned')\n    return grid\n",
    "chdir": "import os\ndef transform(grid):\n    os.chdir('/tmp')\n    return grid\n",
}


@pytest.mark.slow
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
        outs = ex.run(jobs)
        assert all(children(pid) == [] for pid in ex.server_pids())
    assert [outs[i] for i in good] == [[FLIPPED]] * len(good)
    by_name = dict(zip(HOSTILE, (outs[i + 3] for i in range(0, len(jobs) - 8, 4)), strict=True))
    assert kinds(by_name["kill parent"]) == {FailureKind.EXCEPTION}  # seccomp: EPERM
    assert kinds(by_name["fork"]) == {FailureKind.EXCEPTION}
    assert kinds(by_name["thread"]) == {FailureKind.EXCEPTION}
    for name in ("swallow alarm", "ignore SIGTERM", "C loop", "disarm timer"):
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
        "import numpy as np\ndef transform(grid):\n    np.fliplr = lambda a: a\n    return grid\n",
        "import numpy as np\ndef transform(grid):\n    vars(np)['fliplr'] = lambda a: a\n    return grid\n",
        "import numpy\ndef transform(grid):\n    numpy.seterr(all='raise')\n    return grid\n",
        "import sys\ndef transform(grid):\n    sys.setrecursionlimit(50)\n    return grid\n",
    ]
    check = (
        "import numpy as np\ndef depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
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
    with Executor(workers=2, timeout_s=TIMEOUT_S, timeout_min_s=TIMEOUT_MIN_S) as fresh:
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


# --- the budget (finding 6): SOAR's clamp(1 s x inputs, 2 s, 20 s) per program, counted in CPU time

BURN = "import time\ndef burn(s):\n    t = time.process_time()\n    while time.process_time() - t < s:\n        pass\n"


def test_one_cpu_budget_per_program():
    """A program has clamp(1 s x 3 inputs, 2 s, 20 s) = 3 s of CPU for the whole call, not 1 s per input."""
    slow_first = BURN + "def transform(grid):\n    burn(1.5 if grid == [[1]] else 0)\n    return grid\n"
    slow_each = BURN + "def transform(grid):\n    burn(1.2)\n    return grid\n"
    inputs = [[[1]], [[2]], [[3]]]
    with Executor(workers=1, timeout_s=1.0) as fresh:
        assert fresh.budget.seconds(len(inputs)) == 3.0
        outs = fresh.run([(slow_first, inputs), (slow_each, inputs)])
    assert outs[0] == [((1,),), ((2,),), ((3,),)]
    assert outs[1] == [Failure(FailureKind.TIMEOUT, over_budget(3.0, "cpu"))] * 3


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.slow
def test_verdicts_do_not_depend_on_load():
    """The same jobs, once on an idle machine and once next to two CPU-bound processes: identical verdicts for
    programs well under the budget; programs far over it (a loop, a sleep) time out in both."""
    heavy = BURN + "def transform(grid):\n    burn(0.25)\n    return [row[::-1] for row in grid]\n"  # 0.5 s in all
    loop = "def transform(grid):\n    while True:\n        pass\n"
    sleep = "import time\ndef transform(grid):\n    time.sleep(1000)\n"
    trivial = [FLIP, *GOOD[1:], "def transform(grid):\n    return [[len(grid)]]\n"]
    inputs = [GRID, [[1, 2]]]
    jobs = [(heavy, inputs)] + [(t, inputs) for t in trivial] + [(loop, inputs), (sleep, inputs)]

    def replay(tag: str) -> list:
        # SOAR's budget for 2 inputs: 2 s of CPU; the wall-clock backstop lowered to 2 x 2 s to keep this short
        with Executor(workers=2, timeout_s=1.0, wall_factor=2.0, chunk_size=4) as fresh:
            return fresh.run([(source + f"# {tag}", grids) for source, grids in jobs])

    idle = replay("idle")
    loops = busy_loops(2)
    try:
        loaded = replay("loaded")
    finally:
        for proc in loops:
            proc.kill()
            proc.wait()
    flipped = [((0, 2, 1), (4, 3, 0)), ((2, 1),)]
    assert idle[:-2] == [flipped] * 5 + [[((2,),), ((1,),)]]
    assert loaded[:-2] == idle[:-2]
    for outs in (idle, loaded):
        assert kinds(outs[-2]) == kinds(outs[-1]) == {FailureKind.TIMEOUT}
    assert idle[-2] == [Failure(FailureKind.TIMEOUT, over_budget(2.0, "cpu"))] * 2
    assert "wall-clock" in idle[-1][0].message  # the sleeper uses no CPU: the backstop ends it


def test_budget_is_configured_and_validated():
    cfg = OmegaConf.load(ROOT / "conf" / "execution" / "default.yaml")
    with Executor.from_config(cfg) as fresh:  # every key of the config file reaches the executor
        assert fresh.budget == Budget(timeout_s=1.0, timeout_min_s=2.0, timeout_max_s=20.0, clock="cpu", wall_factor=5.0)
        assert [fresh.budget.seconds(n) for n in (1, 2, 5, 30)] == [2.0, 2.0, 5.0, 20.0]
    bad = [
        ({"timeout_s": 0}, "execution.timeout_s"),
        ({"timeout_min_s": 5.0, "timeout_max_s": 2.0}, "execution.timeout_max_s"),
        ({"clock": "gpu"}, "execution.clock"),
        ({"wall_factor": 0.5}, "execution.wall_factor"),
        ({"namespace": "numpy"}, "execution.namespace"),
        ({"timeout": 1.0}, "execution.timeout"),
    ]
    for override, key in bad:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            Executor.from_config(OmegaConf.merge(cfg, override))


def test_wall_clock_budget_counts_sleep():
    """clock=wall (SOAR's measure): sleeping counts against the budget itself."""
    nap = "import time\ndef transform(grid):\n    time.sleep(0.8)\n    return grid\n"
    with Executor(workers=1, timeout_s=0.5, timeout_min_s=0.5, clock="wall") as wall, \
            Executor(workers=1, timeout_s=0.5, timeout_min_s=0.5) as cpu:  # fmt: skip
        assert wall.run([(nap, [GRID])]) == [[Failure(FailureKind.TIMEOUT, over_budget(0.5, "wall"))]]
        assert cpu.run([(nap, [GRID])]) == [[((1, 2, 0), (0, 3, 4))]]


# --- programs run as a plain Python file would (finding 7)


@pytest.mark.parametrize(
    "source, message",
    [
        ("def transform(grid):\n    return np.array(grid).tolist()\n", "NameError: name 'np'"),
        ("def transform(grid):\n    return numpy.array(grid).tolist()\n", "NameError: name 'numpy'"),
        ("def transform(grid):\n    return [[int(math.sqrt(4))]]\n", "NameError: name 'math'"),
        ("def transform(grid: Grid) -> Grid:\n    return grid\n", "NameError: name 'Grid'"),  # annotations evaluated
    ],
)
def test_programs_run_as_plain_python(ex, source, message):
    (out,) = run_one(ex, source)
    assert out.kind == FailureKind.EXCEPTION and out.message.startswith(message), out


def test_fresh_globals_hold_only_builtins(ex):
    source = "def transform(grid):\n    return [[int(sorted(globals()) == ['__builtins__', '__name__', 'transform'])]]\n"
    assert run_one(ex, source) == [((1,),)]


def test_soar_namespace_prebinds_numpy_scipy_math():
    source = "def transform(grid):\n    return np.array(grid).tolist() if scipy and math else None\n"
    with Executor(workers=1, timeout_s=TIMEOUT_S, namespace="soar") as soar_like:
        assert run_one(soar_like, source) == [((1, 2, 0), (0, 3, 4))]


# --- shared settings are restored, not paid for with a new child (finding 8)


def test_settings_restored_without_retiring_the_child():
    """Recursion limit, numpy error mode and warning filters (also those a library adds on import, as
    scipy.sparse does) are put back after a program; the child keeps running, with what it imported."""
    changes = (
        "import sys, warnings\nimport numpy as np\nimport scipy.sparse\n"
        "sys.setrecursionlimit(50000)\nnp.seterr(all='raise')\nwarnings.simplefilter('error')\n"
        "def transform(grid):\n    return grid\n"
    )
    check = (
        "import sys, warnings\nimport numpy as np\ndef transform(grid):\n"
        "    errors = any(f[0] == 'error' for f in warnings.filters)\n"
        "    return [[int('scipy.sparse' in sys.modules), int(sys.getrecursionlimit() == 1000),"
        " int(np.geterr()['divide'] == 'warn'), int(not errors)]]\n"
    )
    jobs = [(changes, [GRID]), (check, [GRID]), (FLIP, [GRID]), (FLIP + "#", [GRID])]  # chunks of 2: one child
    with Executor(workers=1, timeout_s=TIMEOUT_S, chunk_size=2) as fresh:
        outs = fresh.run(jobs)
    assert outs[1] == [((1, 1, 1, 1),)]


def test_cpu_seconds_count_what_programs_compute_not_what_they_sleep(ex):
    busy = ("import time\ndef transform(grid):\n    end = time.process_time() + 0.4\n"
            "    while time.process_time() < end:\n        pass\n    return grid\n")
    sleepy = "import time\ndef transform(grid):\n    time.sleep(0.4)\n    return grid\n"
    before = ex.cpu_seconds()
    assert run_one(ex, busy) == [tuple(map(tuple, GRID))]
    computed = ex.cpu_seconds() - before
    assert 0.35 < computed < 2.0  # the program's 0.4 s, plus the fork and its imports
    before = ex.cpu_seconds()
    run_one(ex, sleepy)
    assert ex.cpu_seconds() - before < computed - 0.2
    retired = Executor(workers=1)
    with retired:
        run_one(retired, busy)
    assert retired.cpu_seconds() > 0.35  # kept once its servers are stopped
