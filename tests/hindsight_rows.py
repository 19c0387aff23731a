"""Tasks and archive rows for the tests of soar.scoring.filters and soar.hindsight: real programs run by the
real executor, synthetic tasks and rows right exactly on the pairs asked for, hand-made archives with known
rankings, and a row that fails the test when anything reads its ground-truth test correctness."""
from __future__ import annotations

import numpy as np

from soar.archive import program_row
from soar.data import Pair, Task, load_split
from soar.execution import Executor
from soar.scoring import canonical, score_program

SPLIT = load_split("arc_agi_1", "training")
ROT = "def transform(grid):\n    return [row[::-1] for row in grid[::-1]]"  # 6150a2bd and 3c9b0459: rotate 180
ROT_LONG = 'def transform(grid):\n    """Rotate by 180 degrees."""\n    return [list(reversed(r)) for r in reversed(grid)]'
FLIP_V = "def transform(grid):\n    return grid[::-1]"
FLIP_H = "def transform(grid):\n    return [row[::-1] for row in grid]"
TRANSPOSE = "def transform(grid):\n    return [list(r) for r in zip(*grid)]"
IDENT = "def transform(grid):\n    return grid"
CRASH = "def transform(grid):\n    return 1 / 0"
ZERO = "def transform(grid):\n    return [[0 for _ in row] for row in grid]"
CONST = "def transform(grid):\n    return [[1, 2], [3, 4]]"
BIG = "def transform(grid):\n    return [[1] * 41 for _ in range(41)]"


def executed_rows(executor: Executor, task: Task, codes: list[str], prefix: str = "p", **kw) -> list[dict]:
    """The archive rows of `codes` run on `task` by the real executor; `kw` sets the rows' other fields."""
    results = executor.run([(code, task.inputs) for code in codes])
    return [program_row(task, code, outs, score_program(task, outs), program_id=f"{prefix}{i}",
                        kind=kw.get("kind", "sample"), **{k: v for k, v in kw.items() if k != "kind"})
            for i, (code, outs) in enumerate(zip(codes, results))]


def synth_task(tid: str = "synth", n_train: int = 4, n_test: int = 1, seed: int = 0, hide_test: bool = False) -> Task:
    r = np.random.default_rng(seed)

    def g():
        return r.integers(1, 10, size=(3, 3)).tolist()
    return Task(tid, tuple(Pair(g(), g()) for _ in range(n_train)),
                tuple(Pair(g(), None if hide_test else g()) for _ in range(n_test)))


_counter = iter(range(10**6))


def synth_row(task: Task, pid: str, train_ok, test_ok=None, *, wrong: int = 0, code: str | None = None,
              kind: str = "sample", parent_id: str | None = None, model: str = "m", iteration: int = 0) -> dict:
    """A program right exactly on the pairs flagged; wrong outputs are random non-zero grids seeded by `wrong`, so
    two rows with the same `wrong` and flags have the same outputs."""
    r = np.random.default_rng(1000 + wrong)

    def bad():
        return canonical(r.integers(1, 10, size=(3, 3)).tolist())
    test_ok = [all(train_ok)] * len(task.test) if test_ok is None else test_ok
    outs = [canonical(p.output) if ok else bad() for p, ok in zip(task.train, train_ok)]
    outs += [canonical(p.output) if ok and p.output is not None else bad() for p, ok in zip(task.test, test_ok)]
    code = code or f"def transform(grid):\n    return program_{next(_counter)}(grid)"
    return program_row(task, code, outs, score_program(task, outs), program_id=pid, kind=kind, parent_id=parent_id,
                       model=model, iteration=iteration)


class Guarded(dict):
    """A row that fails the test if anything reads its ground-truth test correctness."""

    def __getitem__(self, key):
        assert key != "correct_test_input", "correct_test_input was read"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key != "correct_test_input", "correct_test_input was read"
        return super().get(key, default)


def archive_rows(task: Task) -> list[dict]:
    """A task's archive: 3 fully correct (codes of different length), 2 train-perfect test-wrong, 1 with 3/4 train
    and the test right, 4 with 1/4, 6 with 0/4 (two pairs of output duplicates)."""
    rows = [synth_row(task, f"c{i}", [True] * 4, [True], code="def transform(grid):\n    return x" + "x" * (5 - i))
            for i in range(3)]
    rows += [synth_row(task, f"tw{i}", [True] * 4, [False], wrong=10 + i) for i in range(2)]
    rows += [synth_row(task, "three", [True, True, True, False], [True], wrong=20)]
    rows += [synth_row(task, f"one{i}", [i == 0, i == 1, i == 2, i == 3], [False], wrong=30 + i) for i in range(4)]
    rows += [synth_row(task, f"zero{i}", [False] * 4, [False], wrong=40 + i // 2) for i in range(6)]
    return rows


def ids(rows) -> list[str]:
    return [r["program_id"] for r in rows]


def mv_rows(task: Task) -> list[Guarded]:
    """Majority key A: 6 programs at h = 0.5 (same test output); key B: 1 program at h = 1; 5 zero-correct."""
    rows = [synth_row(task, f"a{i}", [True, True, False, False], wrong=1, code=f"def transform(g):\n    return a{i}")
            for i in range(6)]
    rows += [synth_row(task, "b", [True] * 4, wrong=2)]
    rows += [synth_row(task, f"z{i}", [False] * 4, wrong=3 + i) for i in range(5)]
    for r in rows:
        r.pop("correct_test_input")
    return [Guarded(r) for r in rows]
