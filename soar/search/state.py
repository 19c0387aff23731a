"""Running counts of a search, updated as evaluated batches arrive (from the evaluator thread), and the REX pools of
the refinement phase."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soar.search.rex import RefinementPool


class SearchState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.programs: Counter[tuple[str, str]] = Counter()  # (task, kind) -> programs
        self.perfect: Counter[tuple[str, str]] = Counter()  # (task, kind) -> train-perfect programs
        self.train_solved: set[str] = set()  # some program perfect on train
        self.test_solved: set[str] = set()  # some program right on every test output (when known)
        self.pools: dict[tuple[str, int], RefinementPool] = {}  # (task, island) -> pool, set by the refinement phase

    def update(self, rows: Iterable[Mapping[str, Any]]) -> None:
        with self.lock:
            for r in rows:
                key = (r["task_id"], r["kind"])
                self.programs[key] += 1
                if r["train_acc"] == 1.0:
                    self.perfect[key] += 1
                    self.train_solved.add(r["task_id"])
                if r["correct_test_input"] and all(r["correct_test_input"]):
                    self.test_solved.add(r["task_id"])

    def curve_point(self) -> dict[str, int]:
        """Fig. 5 of the paper: tasks solved against programs generated."""
        with self.lock:
            return {
                "search/programs": sum(self.programs.values()),
                "search/tasks_train_solved": len(self.train_solved),
                "search/tasks_test_solved": len(self.test_solved),
            }
