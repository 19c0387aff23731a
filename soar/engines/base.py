"""The engine interface: token ids in, n sampled completions per prompt out."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    min_p: float = 0.05
    seed: int = 0


class Engine(Protocol):
    name: str
    max_model_len: int

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat-templated prompt (generation prompt added) as token ids."""
        ...

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int) -> list[list[Completion]]:
        """`n` completions for each prompt; all prompts go in one call so the engine can batch them."""
        ...

    def close(self) -> None: ...


class Metered:
    """An engine that counts what it generates and the seconds spent generating."""

    def __init__(self, engine: Engine) -> None:
        self.engine: Engine | None = engine
        self.name, self.max_model_len = engine.name, engine.max_model_len
        self.tokens = self.completions = 0
        self.seconds = 0.0

    def swap(self, build: Callable[[], Engine]) -> None:
        """Close the current engine first (its memory is needed), then go on counting with `build()`."""
        self.close()
        self.engine = build()
        self.name, self.max_model_len = self.engine.name, self.engine.max_model_len

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.engine.encode(messages)

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int) -> list[list[Completion]]:
        start = time.perf_counter()
        out = self.engine.generate(prompts, n, max_tokens)
        self.seconds += time.perf_counter() - start
        self.completions += sum(len(cs) for cs in out)
        self.tokens += sum(c.n_tokens for cs in out for c in cs)
        return out

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
