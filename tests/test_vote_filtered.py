"""Issue 12, finding 1: the vote runs on the programs that pass SOAR's filters (Alg. 3, spec §6 and §7.2).

The probe: on ARC-AGI-1 training task 67a3c6ac (mirror each row; 3 train pairs of sides 4, 7, 6, a 3x3 test input)
one program is right on 2 of 3 train pairs and on the test input (weight 1 + 1000 * 2/3 = 667.7), 700 programs return
an all-zero grid and 700 return their input (weight 700 each). Over every program the two junk answers win both
attempts; SOAR filters them out (all-background, mostly identity) before it votes, so the right answer wins.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from soar.archive import ProgramArchive, program_row, row_outputs
from soar.data import Task, load_split
from soar.execution import Executor
from soar.scoring import FILTERS, keep_program, keep_programs, score_program, score_task, summarize
from soar.search.results import task_results

TASK_ID = "67a3c6ac"
PARTIAL = ("def transform(grid):\n"
           "    out = [list(row[::-1]) for row in grid]\n"
           "    if len(out) == 7:  # wrong on the largest train input only\n"
           "        out[0][0] = (out[0][0] + 1) % 10\n"
           "    return out\n")
ZERO = "def transform(grid):\n    return [[0 for _ in row] for row in grid]\n"
IDENTITY = "def transform(grid):\n    return grid\n"
PROBE = [PARTIAL] + [ZERO] * 700 + [IDENTITY] * 700
SCORING = OmegaConf.load(ROOT / "conf" / "scoring" / "weighted.yaml")


@pytest.fixture(scope="module")
def task() -> Task:
    return load_split("arc_agi_1", "training", None)[TASK_ID]


def archive_table(executor: Executor, task: Task, codes: list[str], path: Path) -> pa.Table:
    """A real archive at `path` of `codes` run on `task` by the real executor (it runs each distinct code once)."""
    outputs = executor.run([(code, task.inputs) for code in codes])
    rows = [program_row(task, code, outs, score_program(task, outs), program_id=f"p{i}", kind="sample")
            for i, (code, outs) in enumerate(zip(codes, outputs))]
    archive = ProgramArchive(path / "programs.parquet")
    archive.append(rows)
    return archive.read()


def test_filtered_programs_do_not_vote(task: Task, tmp_path: Path, executor: Executor) -> None:
    table = archive_table(executor, task, PROBE, tmp_path)
    train_acc = table.column("train_acc").to_pylist()
    assert train_acc[0] == pytest.approx(2 / 3) and table.column("correct_test_input")[0].as_py() == [True]
    assert set(train_acc[1:]) == {0.0}  # weights: 667.7 for the right answer, 700 for each junk answer

    (r,) = task_results(table, {TASK_ID: task}, SCORING)
    assert r.vote_pass2 == 1.0 and r.vote_gap == 0.0
    assert r.vote_pass2_unfiltered == 0.0  # soar's old number: the junk answers take both attempts
    assert r.n_voters == 1
    assert r.filtered == {**dict.fromkeys(FILTERS, 0), "all_background": 700, "identity": 700}
    # the search's own figures still describe every program
    assert (r.n_programs, r.n_valid, r.test_oracle, r.test_oracle_kaggle) == (1401, 1401, True, 1.0)

    m = summarize([r])
    assert (m["vote_pass2"], m["vote_pass2_unfiltered"], m["vote_gap"]) == (1.0, 0.0, 0.0)
    assert m["n_voters"] == 1 and m["filtered"]["identity"] == 700


def test_a_correct_program_that_fails_a_filter_still_counts_for_the_oracle(task: Task, tmp_path: Path,
                                                                           executor: Executor) -> None:
    """Oracles measure what the search found (all programs); only the vote is restricted to the filtered set."""
    correct = "def transform(grid):\n    return [row[::-1] for row in grid]  # " + "x" * 200 + "\n"
    (r,) = task_results(archive_table(executor, task, [correct, ZERO], tmp_path), {TASK_ID: task}, SCORING)
    assert r.filtered["long_line"] == 1 and r.n_voters == 0
    assert r.train_oracle and r.test_oracle and r.test_oracle_kaggle == 1.0
    assert r.vote_pass2 == 0.0 and r.attempts == [] and r.vote_gap == 1.0
    assert r.vote_pass2_unfiltered == 1.0


def test_hardcoded_train_perfect_programs_do_not_win_arc25(task: Task, tmp_path: Path, executor: Executor) -> None:
    """The arc25 vote (train-perfect programs only) is filtered too: a program that copies the train outputs
    is train-perfect, but its copied grids are in its code."""
    cases = "\n".join(f"    if grid == {p.input}:\n        return {p.output}" for p in task.train)
    hardcoded = f"def transform(grid):\n{cases}\n    return grid\n"
    right = "def transform(grid):\n    return [row[::-1] for row in grid]\n"
    table = archive_table(executor, task, [hardcoded] * 3 + [right], tmp_path)
    assert table.column("train_acc").to_pylist() == [1.0] * 4
    (r,) = task_results(table, {TASK_ID: task}, OmegaConf.merge(SCORING, {"vote": "arc25", "attempts": 1}))
    assert r.filtered["hardcoded_output"] == 3
    assert r.vote_pass2 == 1.0 and r.vote_pass2_unfiltered == 0.0


def test_keep_programs_agrees_with_keep_program_on_archive_rows(task: Task, tmp_path: Path,
                                                               executor: Executor) -> None:
    """The vote's batch form (executor outputs, each distinct outputs checked once) and the per-row form that
    hindsight uses reject the same programs for the same reason."""
    codes = [PARTIAL, ZERO, IDENTITY, ZERO + "# again\n", "def transform(grid):\n    return grdi\n",
             "def transform(grid):\n    return [[1, 2], [3, 4]]\n",  # near-constant
             "def transform(grid):\n    return [row[::-1] for row in grid]  # " + "x" * 200 + "\n",
             "def transform(grid):\n    if len(grid) == 3:\n        return "  # the test answer, copied
             + str([row[::-1] for row in task.test[0].input]) + "\n    return [row[::-1] for row in grid]\n"]
    rows = archive_table(executor, task, codes, tmp_path).to_pylist()
    verdicts = [keep_program(r, task) for r in rows]
    assert verdicts == [None, "all_background", "identity", "all_background", "invalid_grid", "near_constant",
                        "long_line", "hardcoded_output"]
    assert keep_programs(task, [(r["code"], row_outputs(r)) for r in rows]) == verdicts
    with pytest.raises(ValueError, match="67a3c6ac: expected 4 outputs, got 3"):
        keep_programs(task, [(PARTIAL, row_outputs(rows[0])[:3])])


def replay(tmp_path: Path, codes: list[str]) -> Path:
    """`python search.py model=replay` on `codes` for the task; returns the run dir (metrics, tasks, report)."""
    programs = tmp_path / "programs.jsonl"
    programs.write_text("".join(json.dumps({"task_id": TASK_ID, "code": code}) + "\n" for code in codes))
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "search.py", f"hydra.run.dir={run_dir}", "model=replay", "data=arc_agi_1",
         f"model.programs={programs}", "logger=none"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_replay_of_the_probe_gives_vote_pass2_1(tmp_path: Path) -> None:
    run_dir = replay(tmp_path, PROBE)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_programs"] == 1401 and metrics["n_voters"] == 1
    assert metrics["vote_pass2"] == 1.0 and metrics["vote_pass2_unfiltered"] == 0.0
    tasks = json.loads((run_dir / "tasks.json").read_text())
    assert tasks[TASK_ID]["vote_pass2"] == 1.0 and tasks[TASK_ID]["n_voters"] == 1
    assert tasks[TASK_ID]["filtered"]["all_background"] == tasks[TASK_ID]["filtered"]["identity"] == 700
    html = (run_dir / "report" / "report.html").read_text()
    assert "<th>voters</th>" in html


def test_report_says_when_the_best_program_does_not_vote(tmp_path: Path) -> None:
    right_but_long = "def transform(grid):\n    return [row[::-1] for row in grid]  # " + "x" * 200 + "\n"
    run_dir = replay(tmp_path, [right_but_long, PARTIAL])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_oracle"] == 1.0 and metrics["vote_pass2"] == 1.0  # PARTIAL is right on the test input
    assert metrics["filtered"]["long_line"] == 1 and metrics["n_voters"] == 1
    html = (run_dir / "report" / "report.html").read_text()
    assert "filtered out (long_line), so it does not vote" in html


def test_the_sample_only_results_come_from_the_same_pass(task: Task, tmp_path: Path, executor: Executor) -> None:
    from soar.search.results import scored_kinds

    table = archive_table(executor, task, PROBE[:40] + [PARTIAL], tmp_path)
    kinds = pa.array(["refine" if i % 3 == 0 else "sample" for i in range(table.num_rows)])
    table = table.set_column(table.schema.get_field_index("kind"), "kind", kinds)
    both, samples = scored_kinds(table, {TASK_ID: task}, SCORING, [None, "sample"])
    sampled = table.filter(pa.compute.equal(table.column("kind"), "sample"))
    assert both == task_results(table, {TASK_ID: task}, SCORING)
    assert samples == task_results(sampled, {TASK_ID: task}, SCORING) and samples[0].n_programs == 27
    # the archive's rows are grouped by outputs in Arrow: the same results as scoring every row's unpacked outputs
    plain = [(r["code"], row_outputs(r)) for r in table.to_pylist()]
    assert both == [score_task(task, plain, attempts=2, method=SCORING.vote, c=SCORING.c)]
    assert len({tuple(outs) for _, outs in plain}) < len(plain) / 2  # programs repeat outputs, as in a search
