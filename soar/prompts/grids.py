"""Grid and task rendering for prompts (spec §2.2): SOAR's `numpy` mode, i.e. the text of str(np.array(grid))."""
from __future__ import annotations

from collections.abc import Sequence

from soar.data.task import Task


def format_grid(grid: Sequence[Sequence[int]]) -> str:
    """Render `grid` as numpy prints an int array: "[[0 7 7]\\n [7 7 7]]".

    Identical to str(np.array(grid)) whenever numpy neither summarises (> 1000 cells) nor wraps lines
    (rows wider than 75 characters, i.e. more than 36 single-digit columns) - always the case for ARC
    grids (<= 30x30). Larger grids (predicted outputs up to 40x40) keep one full row per line.
    Cells are right-aligned to the widest value, as numpy does.
    """
    rows = [[str(v) for v in row] for row in grid]
    if not any(rows):
        return "[]"
    width = max(len(cell) for row in rows for cell in row)
    lines = ("[" + " ".join(cell.rjust(width) for cell in row) + "]" for row in rows)
    return "[" + "\n ".join(lines) + "]"


def _block(title: str, grid: Sequence[Sequence[int]]) -> str:
    cols = len(grid[0]) if len(grid) else 0
    return f"## {title} (grid shape: {len(grid)} by {cols}):\n{format_grid(grid)}"


def format_task(task: Task, show_test_outputs: bool = False) -> str:
    """All train pairs, then each test input (followed by its output when shown and known); blank-line separated."""
    blocks: list[str] = []
    for i, pair in enumerate(task.train, 1):
        blocks += [_block(f"Input {i}", pair.input), _block(f"Output {i}", pair.output)]  # type: ignore[arg-type]
    for j, pair in enumerate(task.test, 1):
        blocks.append(_block(f"Test Input {j}", pair.input))
        if show_test_outputs and pair.output is not None:
            blocks.append(_block(f"Test Output {j}", pair.output))
    return "\n\n".join(blocks)


def prompt_length(task: Task) -> int:
    """The length of the task as the prompts show it (no test output): `data.limit` runs the shortest tasks."""
    return len(format_task(task))
