"""Generation and execution overlap: programs run on the executor's CPU workers in a background thread
while the engine generates the next round."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from soar.archive import ProgramArchive
from soar.data import Task
from soar.execution import Executor
from soar.search.evaluate import evaluate

Rows = list[dict[str, Any]]


class Evaluator:
    """Executes, scores and archives submitted batches in order; each of `listeners` sees each batch's kind and
    rows (in the evaluator thread). Errors surface in the caller at the next `submit` or `drain`."""

    def __init__(self, executor: Executor, tasks: dict[str, Task], archive: ProgramArchive, *, iteration: int,
                 model: str) -> None:
        self.executor, self.tasks, self.archive = executor, tasks, archive
        self.iteration, self.model = iteration, model
        self.listeners: list[Callable[[str, Rows], None]] = []
        self.busy_s = 0.0
        self._queue: queue.Queue[tuple[str, Rows] | None] = queue.Queue(maxsize=1)  # generation runs <= 2 rounds ahead
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="soar-evaluator", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, programs = item
            try:
                if self._error is None:
                    t0 = time.perf_counter()
                    rows = evaluate(self.executor, self.tasks, programs, kind=kind, iteration=self.iteration,
                                    model=self.model)
                    self.archive.append(rows)
                    self.busy_s += time.perf_counter() - t0
                    for listener in self.listeners:
                        listener(kind, rows)
            except BaseException as e:  # kept for the caller; later batches are skipped
                self._error = e
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError("program evaluation failed") from self._error

    def submit(self, kind: str, programs: Rows) -> None:
        self._raise()
        if programs:
            self._queue.put((kind, programs))

    def drain(self, keep: int = 0) -> None:
        """Wait until at most the last `keep` submitted batches are not yet archived (by default: none)."""
        with self._queue.all_tasks_done:  # Queue.join, stopping at `keep` batches left
            while self._queue.unfinished_tasks > keep:
                self._queue.all_tasks_done.wait()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
