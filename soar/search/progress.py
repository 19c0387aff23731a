"""The live line of a search phase, redrawn while the engine generates (every engine step, at most once a second):

    sample 60/96 programs [00:31], 236 tok/s · 36 running · ETA 0:21 · solved 0/6 (train 0)   (an example)

Programs count completions as they finish generating; the ETA is the tokens still expected (the mean tokens of a
finished completion, or max_tokens before any has finished, for every program not yet finished) over the current
rate; solved counts tasks whose programs were executed and found right on every test output (train-perfect in
brackets), so it lags generation by one round.
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

from soar.search.state import SearchState


class PhaseProgress:
    """Use as a context manager around a phase; call `generating` from the engine's progress callback and
    `round_done` once a round's programs are handed to the evaluator."""

    def __init__(self, desc: str, total: int, initial: int, max_tokens: int, state: SearchState, n_tasks: int,
                 interval: float | None = None) -> None:
        self.state, self.n_tasks, self.max_tokens = state, n_tasks, max_tokens
        tty = sys.stderr.isatty()
        self.interval = interval if interval is not None else (1.0 if tty else 30.0)  # log files get a line a while
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="prog", mininterval=self.interval,
                        bar_format="{desc} {n_fmt}/{total_fmt} programs [{elapsed}]{postfix}", dynamic_ncols=True)
        self.start = time.perf_counter()
        self.tokens = self.finished = 0  # of this phase, all calls so far
        self._call_tokens = self._call_finished = self._call_size = 0  # of the generate call in flight
        self._drawn = 0.0

    def __enter__(self) -> PhaseProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def start_call(self, running: int) -> None:
        """A generate call of `running` completions begins."""
        self._call_tokens = self._call_finished = 0
        self._call_size = running

    def generating(self, tokens: int, finished: int) -> None:
        """The engine's callback: tokens generated and completions finished so far in the call in flight."""
        self.tokens += tokens - self._call_tokens
        self.bar.n += finished - self._call_finished  # drawn by _draw, with a fresh postfix
        self.finished += finished - self._call_finished
        self._call_tokens, self._call_finished = tokens, finished
        self._draw()

    def round_done(self, kept: int, generated: int) -> None:
        """A call's completions were handed on; `kept` of its `generated` fit the budget (the rest are dropped)."""
        self.bar.n += kept - generated  # the bar counts programs kept
        self._call_size = self._call_finished  # nothing runs any more
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._drawn < self.interval:
            return
        self._drawn = now
        elapsed = now - self.start
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        per_program = self.tokens / self.finished if self.finished else self.max_tokens
        in_flight = max(self._call_tokens - self._call_finished * per_program, 0.0)  # running completions' tokens
        left = max(self.bar.total - self.bar.n, 0) * per_program - in_flight
        running = self._call_size - self._call_finished
        prefilled = self.tokens >= running  # every running completion has its first token: a rate to go by
        eta = tqdm.format_interval(max(left, 0.0) / rate) if rate > 0 and prefilled else "?"
        with self.state.lock:
            solved, train = len(self.state.test_solved), len(self.state.train_solved)
        parts = [f"{rate:.0f} tok/s" if prefilled else "prefill"] + ([f"{running} running"] if running else [])
        parts += [f"ETA {eta}", f"solved {solved}/{self.n_tasks} (train {train})"]
        self.bar.set_postfix_str(" · ".join(parts), refresh=False)
        self.bar.refresh()
