"""ARC tasks: the Task model, loading and validating splits, choosing which tasks to run."""
from soar.data.load import TaskFormatError, load_split, parse_task, select_tasks
from soar.data.task import Grid, Pair, Task

__all__ = ["Grid", "Pair", "Task", "TaskFormatError", "load_split", "parse_task", "select_tasks"]
