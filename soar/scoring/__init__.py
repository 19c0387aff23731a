"""Program scoring, final answer selection (weighted majority vote) and per-task / aggregate metrics."""
from soar.scoring.metrics import TaskResult, score_task, summarize
from soar.scoring.program import ProgramScore, canonical, is_correct, score_program
from soar.scoring.vote import VOTE_METHODS, Candidate, kaggle_score, vote

__all__ = [
    "VOTE_METHODS",
    "Candidate",
    "ProgramScore",
    "TaskResult",
    "canonical",
    "is_correct",
    "kaggle_score",
    "score_program",
    "score_task",
    "summarize",
    "vote",
]
