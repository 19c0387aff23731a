"""ARC grids as images: each pair's input, expected output and a program's output, in the ARC palette."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure  # no pyplot: no global backend state; PNGs are drawn by Agg

from soar.data import Grid, Task
from soar.execution.outcome import Failure, Output

# 0 black, 1 blue, 2 red, 3 green, 4 yellow, 5 grey, 6 magenta, 7 orange, 8 light blue, 9 maroon
ARC_COLORS = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
              "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")
PALETTE = ListedColormap(ARC_COLORS)
GOOD, BAD, MUTED = "#1a7f37", "#cf222e", "#57606a"
PANEL_IN = 2.2  # inches per grid panel


def _shape(grid: Sequence[Sequence[int]]) -> str:
    return f"{len(grid)}x{len(grid[0]) if grid else 0}"


def _grid(ax: Axes, grid: Sequence[Sequence[int]], title: str, color: str = "black") -> None:
    ax.set_title(title, fontsize=9, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
    if not grid or not grid[0]:
        _blank(ax, "empty grid")
        return
    h, w = len(grid), len(grid[0])
    ax.imshow(PALETTE(np.asarray(grid, dtype=int)), interpolation="nearest")
    ax.hlines(np.arange(-0.5, h), -0.5, w - 0.5, color="#444444", linewidth=0.5)  # cell borders (cheaper than ticks)
    ax.vlines(np.arange(-0.5, w), -0.5, h - 0.5, color="#444444", linewidth=0.5)


def _blank(ax: Axes, label: str, title: str | None = None, color: str = MUTED) -> None:
    if title is not None:
        ax.set_title(title, fontsize=9, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#f3f3f3")
    ax.text(0.5, 0.5, label, ha="center", va="center", fontsize=8, color=color, transform=ax.transAxes)


def _program_panel(ax: Axes, out: Output | None, expected: Grid | None) -> None:
    if out is None:
        _blank(ax, "no program", "program")
    elif isinstance(out, Failure):
        _blank(ax, "no output\n" + textwrap.fill(textwrap.shorten(str(out), 72), 24), "program: no output", BAD)
    elif expected is None:
        _grid(ax, out, "program")
    elif len(out) != len(expected) or len(out[0]) != len(expected[0]):
        _grid(ax, out, f"program: wrong shape {_shape(out)}", BAD)
    elif [list(r) for r in out] == expected:
        _grid(ax, out, "program: correct", GOOD)
    else:
        _grid(ax, out, "program: wrong", BAD)


def render_task(task: Task, outputs: Sequence[Output] | None, path: Path) -> None:
    """One row per train then test pair: input, expected output, the program's output (None: no program)."""
    pairs = [(f"{kind} {i + 1}", p)
             for kind, ps in (("train", task.train), ("test", task.test)) for i, p in enumerate(ps)]
    height = len(pairs) * PANEL_IN + 0.4
    fig = Figure(figsize=(3 * PANEL_IN, height))
    axes = fig.subplots(len(pairs), 3, squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=1 - 0.65 / height, wspace=0.1, hspace=0.3)
    for k, ((name, pair), row) in enumerate(zip(pairs, axes)):
        _grid(row[0], pair.input, f"{name} input {_shape(pair.input)}")
        if pair.output is None:
            _blank(row[1], "unknown", "expected")
        else:
            _grid(row[1], pair.output, f"expected {_shape(pair.output)}")
        _program_panel(row[2], None if outputs is None else outputs[k], pair.output)
    fig.suptitle(task.id, fontsize=11)
    fig.savefig(path, dpi=80)
