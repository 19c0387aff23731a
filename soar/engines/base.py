"""The engine interface: token ids in, n sampled completions per prompt out, with an optional stop rule and a
progress callback that sees tokens as they are generated."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

StopRule = Callable[[str], "int | None"]  # text so far -> where to cut it and stop, or None to go on
OnProgress = Callable[[int, int], None]  # (tokens generated, completions finished) so far in this call


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int           # tokens generated: up to EOS, max_tokens or the step where the stop rule fired
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (0 where the engine has none)


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    min_p: float = 0.05
    seed: int = 0  # the engine-wide seed (engines take no per-request seeds): see engine_seed


def engine_seed(seed: int, iteration: int, phase: str) -> int:
    """The seed of the engine that runs `phase` (sample | refine) in `iteration` of a run seeded `seed`: a stable
    hash, so that every engine of a loop draws its own stream (the same seed in every iteration would replay one
    stream of random draws on nearly the same model and prompts), and no two of them are close (vLLM seeds child i
    of a request `seed + i`: consecutive seeds would share draws if a seed ever reached a request)."""
    digest = hashlib.sha256(f"soar-engine/{int(seed)}/{int(iteration)}/{phase}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # 31 bits: every engine's seed type takes it


class Engine(Protocol):
    name: str
    max_model_len: int
    dtype: str  # what it computes in: auto resolved (soar.hardware.choose_dtype)
    gpus: int  # the GPUs it computes on (0: CPUs)

    def encode(self, messages: list[dict[str, str]], answer_prefix: str = "") -> list[int]:
        """The chat-templated prompt (generation prompt added) as token ids, followed by `answer_prefix`: the start
        of the answer, which the model continues."""
        ...

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int, *, stop: StopRule | None = None,
                 on_progress: OnProgress | None = None) -> list[list[Completion]]:
        """`n` completions for each prompt; all prompts go in one call so the engine can batch them. A completion
        for which `stop(text)` returns an index ends there (its text cut at it). `on_progress` is called as
        tokens are generated, every engine step or so."""
        ...

    def close(self) -> None: ...


class Metered:
    """An engine that counts what it generates, the prompt tokens it was given (and how many came from the prefix
    cache), the seconds spent generating and the GPU-seconds they took (seconds x the engine's GPUs)."""

    ZERO = {"tokens": 0, "completions": 0, "prompt_tokens": 0, "cached_tokens": 0, "seconds": 0.0,
            "gpu_seconds": 0.0}

    def __init__(self, engine: Engine) -> None:
        self.engine: Engine | None = engine
        self._describe(engine)
        self.tokens = self.completions = self.prompt_tokens = self.cached_tokens = 0
        self.seconds = self.gpu_seconds = 0.0

    def counters(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.ZERO}

    def swap(self, build: Callable[[], Engine]) -> None:
        """Close the current engine first (its memory is needed), then go on counting with `build()`."""
        self.close()
        self.engine = build()
        self._describe(self.engine)

    def _describe(self, engine: Engine) -> None:
        self.name, self.max_model_len, self.dtype = engine.name, engine.max_model_len, engine.dtype
        self.gpus = engine.gpus

    def _open(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the engine is closed")
        return self.engine

    def encode(self, messages: list[dict[str, str]], answer_prefix: str = "") -> list[int]:
        return self._open().encode(messages, answer_prefix)

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int, *, stop: StopRule | None = None,
                 on_progress: OnProgress | None = None) -> list[list[Completion]]:
        engine, start = self._open(), time.perf_counter()
        out = engine.generate(prompts, n, max_tokens, stop=stop, on_progress=on_progress)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self.gpu_seconds += elapsed * engine.gpus
        flat = [c for cs in out for c in cs]
        self.completions += len(flat)
        self.tokens += sum(c.n_tokens for c in flat)
        self.prompt_tokens += sum(c.prompt_tokens for c in flat)
        self.cached_tokens += sum(c.cached_tokens for c in flat)
        return out

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
