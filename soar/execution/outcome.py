"""What running a program on one input gives: a canonical grid or a typed failure."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# A valid output grid, canonical and hashable: rectangular, ints 0..9, at most 40x40.
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
