"""soar.prompts.grids: grids and tasks as prompt text, SOAR's numpy text, exact task layout (spec §2.2). The report's
grid images are tested in test_report_grids.py."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from soar.data import load_split, parse_task
from soar.prompts import format_grid, format_task

TASK = parse_task(
    {
        "train": [
            {"input": [[0, 7, 7], [7, 7, 7]], "output": [[7, 0]]},
            {"input": [[5]], "output": [[1, 2], [3, 4], [5, 6]]},
        ],
        "test": [{"input": [[8, 0, 8]], "output": [[9]]}, {"input": [[2], [2]], "output": [[4, 4]]}],
    },
    "tiny",
    "mem",
)

EXPECTED = """\
## Input 1 (grid shape: 2 by 3):
[[0 7 7]
 [7 7 7]]

## Output 1 (grid shape: 1 by 2):
[[7 0]]

## Input 2 (grid shape: 1 by 1):
[[5]]

## Output 2 (grid shape: 3 by 2):
[[1 2]
 [3 4]
 [5 6]]

## Test Input 1 (grid shape: 1 by 3):
[[8 0 8]]

## Test Input 2 (grid shape: 2 by 1):
[[2]
 [2]]"""

EXPECTED_WITH_TEST_OUTPUTS = """\
## Test Input 1 (grid shape: 1 by 3):
[[8 0 8]]

## Test Output 1 (grid shape: 1 by 1):
[[9]]

## Test Input 2 (grid shape: 2 by 1):
[[2]
 [2]]

## Test Output 2 (grid shape: 1 by 2):
[[4 4]]"""


def test_format_grid_example() -> None:
    assert format_grid([[0, 7, 7], [7, 7, 7], [0, 7, 7]]) == "[[0 7 7]\n [7 7 7]\n [0 7 7]]"


def test_format_task_exact_text() -> None:
    assert format_task(TASK) == EXPECTED


def test_format_task_with_test_outputs() -> None:
    train_part = EXPECTED.split("\n\n## Test Input 1")[0]
    assert format_task(TASK, show_test_outputs=True) == train_part + "\n\n" + EXPECTED_WITH_TEST_OUTPUTS


def test_same_text_as_numpy_on_real_arc_grids() -> None:
    tasks = load_split("arc_agi_1", "evaluation")
    grids = [g for t in tasks.values() for p in t.train + t.test for g in (p.input, p.output)]
    sample = random.Random(0).sample(grids, 300)
    sample += [max(grids, key=lambda g: len(g) * len(g[0])), max(grids, key=lambda g: len(g[0]))]
    assert len(sample) >= 50 and any(len(g) == len(g[0]) == 30 for g in sample)
    for grid in sample:
        assert format_grid(grid) == str(np.array(grid))


def test_same_text_as_numpy_for_wide_values_and_numpy_input() -> None:
    rng = random.Random(1)
    for rows, cols in itertools.product([1, 2, 7], [1, 3, 12]):
        grid = [[rng.choice([-3, 0, 5, 10, 123]) for _ in range(cols)] for _ in range(rows)]
        assert format_grid(grid) == str(np.array(grid))
        assert format_grid(np.array(grid)) == str(np.array(grid))


@pytest.mark.parametrize("side", [33, 40])
def test_large_grid_rendered_in_full(side: int) -> None:
    grid = [[(r + c) % 10 for c in range(side)] for r in range(side)]
    text = format_grid(grid)
    assert "..." not in text and "..." in str(np.array(grid))  # numpy would summarise
    lines = text.split("\n")
    assert len(lines) == side  # one line per row, never wrapped
    assert lines[0] == "[[" + " ".join(str(v) for v in grid[0]) + "]"
    assert lines[-1] == " [" + " ".join(str(v) for v in grid[-1]) + "]]"
    assert text == np.array2string(np.array(grid), threshold=10**6, max_line_width=10**6)


def test_empty_grid() -> None:
    assert format_grid([]) == "[]" == format_grid([[]])
