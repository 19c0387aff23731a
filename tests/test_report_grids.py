"""soar.report.grids: a task's pairs drawn as PNGs in the ARC palette, one row per pair (input, expected output,
the program's output). The prompts' text grids are tested in test_prompt_grids.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread

from soar.data import Pair, Task
from soar.execution import Failure, FailureKind
from soar.report.grids import ARC_COLORS, PANEL_IN, render_task

# one train pair (colours 1-4), one test pair whose output is unknown (colour 5)
TASK = Task("grids", (Pair([[1, 2], [3, 4]], [[4, 3], [2, 1]]),), (Pair([[5, 5]], None),))
BLANK = (243, 243, 243)  # the background of a panel without a grid


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def colours(path: Path) -> set[tuple[int, ...]]:
    pixels = imread(path)
    return {tuple(p) for p in np.round(pixels[..., :3] * 255).astype(int).reshape(-1, 3)}


def test_every_grid_is_drawn_in_the_arc_palette_one_row_per_pair(tmp_path: Path) -> None:
    path = tmp_path / "task.png"
    render_task(TASK, [((9, 9), (9, 9)), Failure(FailureKind.EXCEPTION, "ZeroDivisionError")], path)
    height, width = imread(path).shape[:2]
    assert (height, width) == (round((2 * PANEL_IN + 0.4) * 80), round(3 * PANEL_IN * 80))  # 2 pairs, 3 panels
    seen = colours(path)
    assert {rgb(ARC_COLORS[v]) for v in (1, 2, 3, 4, 5, 9)} <= seen  # the task's grids and the program's (9)
    assert rgb(ARC_COLORS[6]) not in seen  # a colour that no grid holds
    assert BLANK in seen  # the program's failure and the unknown test output: blank panels


def test_without_a_program_only_the_task_is_drawn(tmp_path: Path) -> None:
    path = tmp_path / "task.png"
    render_task(TASK, None, path)
    seen = colours(path)
    assert {rgb(ARC_COLORS[v]) for v in (1, 2, 3, 4, 5)} <= seen and BLANK in seen
    assert rgb(ARC_COLORS[9]) not in seen
