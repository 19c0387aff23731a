"""A scripted engine (answers chosen by the test, one "token" per character) and shard jobs built on it, importable
by the shard processes of a sharded search (put tests/ on their PYTHONPATH). A helper, not a test module."""
from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

from soar.engines.base import Completion

ROTATE = "```python\ndef transform(grid):\n    return [row[::-1] for row in grid[::-1]]\n```"
FLIP = "```python\ndef transform(grid):\n    return grid[::-1]\n```"
TRANSPOSE = "```python\ndef transform(grid):\n    return [list(r) for r in zip(*grid)]\n```"
MIRROR = "```python\ndef transform(grid):\n    return [row[::-1] for row in grid]\n```"


def cut(text: str, stop) -> str:
    end = stop(text) if stop is not None else None
    return text if end is None else text[:end]


class ScriptedEngine:
    """One "token" per character; `answer(prompt_text)` decides every completion."""

    name, dtype, gpus = "scripted", "float32", 0

    def __init__(self, answer: Callable[[str], str], max_model_len: int = 100_000) -> None:
        self.answer, self.max_model_len = answer, max_model_len
        self.prompts: list[str] = []

    def encode(self, messages: list[dict[str, str]], answer_prefix: str = "") -> list[int]:
        return [ord(c) for c in messages[-1]["content"] + answer_prefix]

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int, *, stop=None,
                 on_progress=None) -> list[list[Completion]]:
        texts = ["".join(map(chr, p)) for p in prompts]
        self.prompts += texts
        out = [[Completion(cut(self.answer(t), stop), 10) for _ in range(n)] for t in texts]
        if on_progress is not None:
            on_progress(10 * n * len(texts), n * len(texts))
        return out

    def close(self) -> None:
        pass


def by_prompt(prompt: str) -> str:
    """An answer that depends on the prompt alone (so on the task and, when refining, on the parent)."""
    return (ROTATE, FLIP, TRANSPOSE, MIRROR)[zlib.crc32(prompt.encode()) % 4]


def use_scripted_engine() -> None:
    """Make soar.search.llm build a ScriptedEngine(by_prompt) instead of the configured model."""
    from soar.search import llm

    llm.build_engine = lambda model, sampling: ScriptedEngine(by_prompt)


def scripted_shard(cfg: Any, run_dir: str, index: int) -> dict[str, Any]:
    from soar.search.shards import run_shard

    use_scripted_engine()
    return run_shard(cfg, run_dir, index)


def shard_killed_after_one_part(cfg: Any, run_dir: str, index: int) -> dict[str, Any]:
    """Shard 1 dies right after writing its first archive part; the others run normally."""
    from soar.archive import ProgramArchive
    from soar.search.shards import run_shard

    if index == 1:
        append = ProgramArchive.append

        def append_once(self: ProgramArchive, rows: Any) -> None:
            append(self, rows)
            raise RuntimeError("killed after its first archive part")

        ProgramArchive.append = append_once  # type: ignore[method-assign]
    return run_shard(cfg, run_dir, index)
