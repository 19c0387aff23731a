"""How long a program may run: SOAR's budget, one per program, counted in CPU time (config: conf/execution).

Decisions:
- The amount is SOAR's (spec §5.1): one budget for the whole call (definitions and every input), of
  clamp(timeout_s x #inputs, timeout_min_s, timeout_max_s) = clamp(1 s x #inputs, 2 s, 20 s) by default.
- soar counts the program's own CPU time (`clock: cpu`), where SOAR counts wall-clock time: a verdict then does
  not depend on how busy the machine is (other jobs, the LLM engine, fork and queueing time do not count). A
  wall-clock backstop of wall_factor x budget still ends a program that sleeps or blocks. `clock: wall` counts
  wall-clock time, as SOAR does (there is no backstop then: the budget is the wall-clock limit).
- A program that runs out of its budget is charged `timeout` on every input, the inputs it finished included,
  with one message, whichever line stopped it (SOAR: "Code execution failed" for every input).
"""

from __future__ import annotations

from dataclasses import dataclass

CLOCKS = ("cpu", "wall")
# Not a budget, but the other setting of how a program runs (runner.py): its globals are a plain module's
# (only builtins, as a Python file has them) or SOAR's (np, scipy and math pre-bound).
NAMESPACES = ("plain", "soar")


@dataclass(frozen=True)
class Budget:
    timeout_s: float = 1.0  # per input
    timeout_min_s: float = 2.0
    timeout_max_s: float = 20.0
    clock: str = "cpu"
    wall_factor: float = 5.0  # clock=cpu: wall-clock backstop, in budgets

    def __post_init__(self) -> None:
        for key in ("timeout_s", "timeout_min_s", "timeout_max_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"execution.{key}={value!r}: must be a number of seconds > 0")
        if self.timeout_max_s < self.timeout_min_s:
            raise ValueError(f"execution.timeout_max_s={self.timeout_max_s!r}: must be >= execution.timeout_min_s="
                             f"{self.timeout_min_s!r}")  # fmt: skip
        if self.clock not in CLOCKS:
            raise ValueError(f"execution.clock={self.clock!r}: must be one of {', '.join(CLOCKS)}")
        if isinstance(self.wall_factor, bool) or not isinstance(self.wall_factor, (int, float)) or self.wall_factor < 1:
            raise ValueError(f"execution.wall_factor={self.wall_factor!r}: must be a number >= 1 (budgets)")

    def seconds(self, n_inputs: int) -> float:
        """The budget of a program run on `n_inputs` inputs, in seconds of `clock`."""
        return min(max(self.timeout_s * n_inputs, self.timeout_min_s), self.timeout_max_s)

    def wall_seconds(self, n_inputs: int) -> float:
        """The wall-clock time after which such a program is stopped whatever its clock says."""
        return self.seconds(n_inputs) * (self.wall_factor if self.clock == "cpu" else 1.0)


def over_budget(seconds: float, clock: str) -> str:
    """The message of a program that ran out of its budget (the same on each of its inputs)."""
    return f"over its {seconds:g} s {'CPU' if clock == 'cpu' else 'wall-clock'} budget"


def over_wall_backstop(seconds: float) -> str:
    """The message of a program (clock=cpu) stopped by the wall-clock backstop: it sleeps, blocks or starves."""
    return f"no result after {seconds:g} s of wall-clock time"
