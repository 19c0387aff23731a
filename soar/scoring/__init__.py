"""Program scoring, the filters a program passes before it votes or becomes data (spec §7.2), final answer selection
(weighted majority vote over the programs that pass the filters) and per-task / aggregate metrics."""
from soar.scoring.filters import FILTERS, keep_program, keep_programs
from soar.scoring.metrics import TaskResult, score_task, summarize
from soar.scoring.program import ProgramScore, canonical, is_correct, score_program
from soar.scoring.vote import DEFAULT_C, VOTE_METHODS, Candidate, kaggle_score, vote

__all__ = [
    "DEFAULT_C",
    "FILTERS",
    "VOTE_METHODS",
    "Candidate",
    "ProgramScore",
    "TaskResult",
    "canonical",
    "is_correct",
    "kaggle_score",
    "keep_program",
    "keep_programs",
    "score_program",
    "score_task",
    "summarize",
    "vote",
]
