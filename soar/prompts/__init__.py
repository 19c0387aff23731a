"""Prompt text: grid/task rendering, chat prompts for sampling and refinement, program extraction from LLM answers."""
from soar.prompts.extract import code_end, extract_code
from soar.prompts.grids import format_grid, format_task, prompt_length
from soar.prompts.templates import (
    COLOR_LEGEND,
    SYSTEM_PROMPT,
    Messages,
    fence,
    refinement_messages,
    sampling_messages,
)

__all__ = [
    "COLOR_LEGEND",
    "SYSTEM_PROMPT",
    "Messages",
    "code_end",
    "extract_code",
    "fence",
    "format_grid",
    "format_task",
    "prompt_length",
    "refinement_messages",
    "sampling_messages",
]
