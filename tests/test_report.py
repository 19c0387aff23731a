"""python -m soar.report on real runs: replay searches of the shipped example programs over real ARC-AGI-1 tasks,
through the real executor, assembled as a loop and as a Hydra multirun sweep."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from matplotlib.image import imread

from soar.data import load_split
from soar.report import build_report
from soar.report.__main__ import main
from soar.report.grids import ARC_COLORS
from soar.report.programs import best_programs, oracle_curve

REPLAY = ["model=replay", "data=arc_agi_1", "logger=none", "execution.timeout_s=0.5"]
HELDOUT = ["data.tasks=[6150a2bd,e9afcf9a,44f52bb0]"]


def search(*args: str) -> None:
    proc = subprocess.run([sys.executable, "search.py", *args, *REPLAY], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def report_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soar.report", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def loop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loop shaped like soar.loop's: iter0 search and held-out, iter1 search (another seed), iter1/heldout
    unfinished."""
    d = tmp_path_factory.mktemp("loop")
    search(f"hydra.run.dir={d / 'iter0' / 'search'}", "iteration=0")
    search(f"hydra.run.dir={d / 'iter0' / 'heldout'}", "iteration=0", *HELDOUT)
    search(f"hydra.run.dir={d / 'iter1' / 'search'}", "iteration=1", "seed=1")
    (d / "iter1" / "heldout").mkdir()  # a stage that started and has no results yet
    return d


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Hydra multirun: jobs 0 and 1 differ by their seed."""
    d = tmp_path_factory.mktemp("sweep")
    search("-m", f"hydra.sweep.dir={d}", "seed=0,1")
    return d


@pytest.fixture(scope="module")
def search_report(loop_dir: Path) -> Path:
    """The report of one search run, through the command line, to its default place: <run>/report."""
    proc = report_cli(loop_dir / "iter0" / "search", "--max-tasks", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return loop_dir / "iter0" / "search" / "report"


def images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def check_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0, path
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    return pixels


@pytest.mark.slow
def test_search_run_report(search_report: Path) -> None:
    run = search_report.parent
    html = (search_report / "report.html").read_text()
    for tid in json.loads((run / "tasks.json").read_text()):
        assert tid in html  # the per-task table names every task
    srcs = images(html)
    assert "vote_vs_oracle.png" in srcs and "search_curves.png" in srcs
    assert "iterations.png" not in srcs and "sample_vs_refine.png" not in srcs  # no loop, no LLM search
    assert "solved_vs_cost.png" not in srcs  # a replay generates nothing
    grids = [s for s in srcs if s.startswith("grids/")]
    assert len(grids) == 3 + 2  # 3 of the 10 solved tasks, the 2 unsolved (e9afcf9a; 44f52bb0 lost the vote)
    assert "grids/run0_search_e9afcf9a.png" in grids and "grids/run0_search_44f52bb0.png" in grids
    for src in srcs:
        check_png(search_report / src)
    assert "unsolved: 2 of 2 shown" in html and "solved: 3 of 10 shown" in html
    assert "filtered out (hardcoded_output), so it does not vote" in html  # 44f52bb0's right program
    curve = oracle_curve(run)  # the Fig. 5 curve ends at the run's test oracle
    metrics = json.loads((run / "metrics.json").read_text())
    assert curve.test[-1] == pytest.approx(metrics["test_oracle"]) and curve.train[-1] == pytest.approx(
        metrics["train_oracle"]) and curve.test == sorted(curve.test) and curve.k[0] == 1
    best = best_programs(run)["6150a2bd"]
    assert best.train_acc == 1.0 and "np.rot90(np.array(grid), 2)" in best.code
    assert "np.rot90(np.array(grid), 2)" in html  # the best program's code under its grid


@pytest.mark.slow
def test_grid_image_has_the_task_colours(search_report: Path) -> None:
    tasks = load_split("arc_agi_1", "training")
    for tid in ("6150a2bd", "74dd1130", "e9afcf9a"):
        pixels = check_png(search_report / "grids" / f"run0_search_{tid}.png")
        seen = {tuple(p) for p in np.round(pixels[..., :3] * 255).astype(int).reshape(-1, 3)}
        cells = {v for pair in tasks[tid].train + tasks[tid].test for g in (pair.input, pair.output) for row in g
                 for v in row}
        for v in cells:
            rgb = tuple(int(ARC_COLORS[v][k:k + 2], 16) for k in (1, 3, 5))
            assert rgb in seen, (tid, v, ARC_COLORS[v])


@pytest.mark.slow
def test_loop_report(loop_dir: Path, tmp_path: Path) -> None:
    html = build_report([loop_dir], tmp_path).read_text()
    srcs = images(html)
    assert "iterations.png" in srcs and "vote_vs_oracle.png" in srcs
    for src in srcs:
        check_png(tmp_path / src)
    summary = html[html.index("<h2>Summary</h2>"):html.index("<h2>Figures</h2>")]
    for it, name in ((0, "search"), (0, "heldout"), (1, "search")):
        assert f"<td>{loop_dir.name}</td><td>{it}</td><td>{name}</td>" in summary
    assert "83.3% (10/12)" in summary and "33.3% (1/3)" in summary  # vote pass@2 on 12 search / 3 held-out tasks
    assert "iter1/heldout" in html  # the unfinished stage is named
    # the tasks of the last iteration that has each set: iter1's search, iter0's held-out
    assert "search tasks, iteration 1" in html and "heldout tasks, iteration 0" in html
    assert (tmp_path / "grids" / "run0_iter0_heldout_44f52bb0.png").is_file()


@pytest.mark.slow
def test_compare_runs_labels_each_by_its_overrides(sweep_dir: Path, tmp_path: Path) -> None:
    main([str(sweep_dir / "0"), str(sweep_dir / "1"), "--out", str(tmp_path), "--max-tasks", "1"])
    html = (tmp_path / "report.html").read_text()
    runs = html[html.index("<h2>Runs</h2>"):html.index("<h2>Summary</h2>")]
    assert "<tr><td>seed=0</td>" in runs and "<tr><td>seed=1</td>" in runs
    assert "seed=0: search tasks" in html and "seed=1: search tasks" in html
    check_png(tmp_path / "vote_vs_oracle.png")


@pytest.mark.slow
def test_sweep_dir_expands_to_its_jobs(sweep_dir: Path) -> None:
    proc = report_cli(sweep_dir, "--max-tasks", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (sweep_dir / "report" / "report.html").read_text()
    assert "<tr><td>seed=0</td>" in html and "<tr><td>seed=1</td>" in html


def test_not_a_run_dir_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    proc = report_cli(tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {tmp_path}: not a soar run dir" in proc.stderr
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "missing")])
    assert exit_.value.code == 2
    assert f"{tmp_path / 'missing'}: no such directory" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
