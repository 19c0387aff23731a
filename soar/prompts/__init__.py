"""Prompt text: grid/task rendering, chat prompts for sampling and refinement, program extraction from LLM answers."""
from soar.prompts.extract import code_end, extract_code
from soar.prompts.grids import format_grid, format_task
from soar.prompts.templates import COLOR_LEGEND, SYSTEM_PROMPT, Messages, refinement_messages, sampling_messages

__all__ = [
    "COLOR_LEGEND",
    "SYSTEM_PROMPT",
    "Messages",
    "code_end",
    "extract_code",
    "format_grid",
    "format_task",
    "refinement_messages",
    "sampling_messages",
]
