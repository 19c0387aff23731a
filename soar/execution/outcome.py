"""What running a program on one input gives: a canonical grid or a typed failure."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_SIDE = 40  # spec §5.2, SOAR's validity check: a valid grid has 1..40 rows and 1..40 columns
# A valid output grid, canonical and hashable: rectangular, ints 0..9, at most MAX_SIDE x MAX_SIDE.
CanonicalGrid = tuple[tuple[int, ...], ...]


class FailureKind(str, Enum):
    SYNTAX = "syntax_error"
    NO_TRANSFORM = "no_transform"
    EXCEPTION = "exception"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    INVALID_OUTPUT = "invalid_output"
    CRASH = "crash"


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}" if self.message else self.kind.value


Output = CanonicalGrid | Failure
