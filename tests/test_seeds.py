"""python -m soar.report.seeds: the seeds of a loop sweep summed up from real (replayed) searches: tasks solved per
seed, iteration and task set, mean/min/max over seeds, the gain per seed, and solved.jsonl that replays."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

ROT180 = "def transform(grid):\n    return [row[::-1] for row in grid[::-1]]"  # training task 6150a2bd
ROT180_LONG = "def transform(grid):\n    out = [row[::-1] for row in grid[::-1]]\n    return out"
FLIP = "def transform(grid):\n    return [row[::-1] for row in grid]"  # training task 67a3c6ac
KRON2 = ("import numpy as np\n\ndef transform(grid):\n"
         "    return np.kron(np.array(grid), np.ones((2, 2), dtype=int)).tolist()")  # evaluation task 60c09cac
IDENTITY = "def transform(grid):\n    return grid"
TRAINING, HELDOUT = ["6150a2bd", "67a3c6ac"], ["60c09cac"]


def replay(run_dir: Path, split: str, programs: list[tuple[str, str]]) -> Path:
    """A real search run dir: `programs` (task_id, code) replayed through search.py and the executor."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    file = run_dir.parent / f"{run_dir.name}.jsonl"
    file.write_text("".join(json.dumps({"task_id": t, "code": c}) + "\n" for t, c in programs))
    tasks = TRAINING if split == "training" else HELDOUT
    proc = subprocess.run(
        [sys.executable, "search.py", f"hydra.run.dir={run_dir}", "model=replay", f"model.programs={file}",
         "data=arc_agi_1", f"data.split={split}", f"data.tasks=[{','.join(tasks)}]", "logger=none",
         "execution.timeout_s=1.0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def loop_dir(path: Path, seed: int, base: Path) -> Path:
    """A loop job of a seed sweep as soar.loop leaves it: its config, iteration 0 shared (base_search's symlink)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "iterations": 2}))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    (path / "iter0").mkdir()
    (path / "iter0" / "search").symlink_to(base.resolve(), target_is_directory=True)
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed 0 learns (iteration 1 solves both training tasks and the held-out one), seed 1 does not."""
    root = tmp_path_factory.mktemp("seeds")
    base = replay(root / "base", "training", [("67a3c6ac", FLIP), ("6150a2bd", IDENTITY)])
    sweep = root / "sweep"
    for seed, (train, held) in enumerate([
            ([("67a3c6ac", FLIP), ("6150a2bd", ROT180_LONG), ("6150a2bd", ROT180)], [("60c09cac", KRON2)]),
            ([("67a3c6ac", FLIP), ("6150a2bd", IDENTITY)], [("60c09cac", IDENTITY)])]):
        loop = loop_dir(sweep / str(seed), seed, base)
        replay(loop / "iter0" / "heldout", "evaluation", [("60c09cac", IDENTITY)])
        replay(loop / "iter1" / "search", "training", train)
        replay(loop / "iter1" / "heldout", "evaluation", held)
    return sweep


def test_seeds_are_summed_up_per_iteration_and_task_set(sweep: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    from soar.report.seeds import summarize_seeds

    out = tmp_path / "out"
    summary = summarize_seeds([sweep], out)
    assert [r["seed"] for r in summary["runs"]] == [0, 1]
    assert summary["n_tasks"] == {"search": 2, "heldout": 1}
    assert summary["gain"] == {"search": {"0": 1, "1": 0}, "heldout": {"0": 1, "1": 0}}
    search = {e["iteration"]: e for e in summary["aggregate"]["search"]}
    assert search[0]["train_oracle"] == {"mean": 1.0, "min": 1, "max": 1} and search[0]["n_seeds"] == 2
    assert search[1]["train_oracle"] == {"mean": 1.5, "min": 1, "max": 2}
    assert search[1]["vote"] == {"mean": 1.5, "min": 1.0, "max": 2.0}
    assert search[0]["valid_rate"]["mean"] == 1.0  # every replayed program gives valid grids
    assert json.loads((out / "summary.json").read_text()) == summary
    assert imread(out / "seeds.png").shape[0] > 100

    lines = [json.loads(line) for line in (out / "solved.jsonl").read_text().splitlines()]
    keys = {(r["split"], r["seed"], r["iteration"], r["task_id"]) for r in lines}
    assert keys == {("training", s, 0, "67a3c6ac") for s in (0, 1)} | {("training", s, 1, "67a3c6ac") for s in (0, 1)} \
        | {("training", 0, 1, "6150a2bd"), ("evaluation", 0, 1, "60c09cac")}
    assert {r["code"] for r in lines if r["task_id"] == "6150a2bd"} == {ROT180}  # the shortest correct program


def test_solved_jsonl_replays_with_search_py(sweep: Path, tmp_path: Path) -> None:
    from soar.archive import ProgramArchive
    from soar.report.seeds import summarize_seeds

    summarize_seeds([sweep], tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, "search.py", f"hydra.run.dir={tmp_path / 'replayed'}", "model=replay",
         f"model.programs={tmp_path / 'out' / 'solved.jsonl'}", "data=arc_agi_1", "data.split=evaluation",
         "logger=none"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = ProgramArchive(tmp_path / "replayed" / "programs.parquet").read().to_pylist()
    assert [(r["task_id"], r["train_acc"], r["correct_test_input"]) for r in rows] == [("60c09cac", 1.0, [True])]


def test_a_dir_that_is_not_a_loop_is_named(sweep: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "soar.report.seeds", str(tmp_path), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr
    same = tmp_path / "same"
    same.mkdir()
    for i in (0, 1):
        (same / str(i)).symlink_to((sweep / "0").resolve(), target_is_directory=True)
    proc = subprocess.run([sys.executable, "-m", "soar.report.seeds", str(same), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "same seed" in proc.stderr
