"""How the search asks for an answer and reads it back.

- `search.answer_prefix`: text every answer is made to start with, prefilled after the chat template's assistant
  header (e.g. "```python\n"). The model continues it; the archived answer is prefix + continuation, so hindsight
  trains on the same text the search generated. null = the paper's prompts, unchanged.
- `search.stop_at_code`: end an answer at the fence that closes its first python block defining `transform`
  (`soar.prompts.code_end`), prefix included.
"""
from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from soar.engines.base import Completion, Engine, StopRule
from soar.prompts import Messages, code_end


@dataclass(frozen=True)
class AnswerFormat:
    prefix: str = ""
    stop_at_code: bool = False

    @classmethod
    def of(cls, search: DictConfig) -> AnswerFormat:
        return cls(search.get("answer_prefix") or "", bool(search.stop_at_code))

    def prompt(self, engine: Engine, messages: Messages) -> list[int]:
        return engine.encode(messages, self.prefix)

    def text(self, completion: Completion) -> str:
        return self.prefix + completion.text

    @property
    def stop(self) -> StopRule | None:
        """The engine's stop rule on the generated text alone (the engine never sees the prefix as output)."""
        if not self.stop_at_code:
            return None
        if not self.prefix:
            return code_end
        n = len(self.prefix)

        def stop(text: str) -> int | None:
            cut = code_end(self.prefix + text)
            return None if cut is None else max(cut - n, 0)

        return stop
