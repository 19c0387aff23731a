"""The self-improvement loop end to end (replayed searches, a real finetune of the embedded model), resuming after a
killed stage."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from transformers import AutoModelForCausalLM
from wandb_records import run_contents

from soar.runs import SearchRun


def loop(run_dir: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "soar.loop", f"hydra.run.dir={run_dir}", "iterations=2", "model=replay",
         "data=arc_agi_1", "execution.timeout_s=0.5", "finetune.max_examples=4", "seed=1", "name=demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_loop_searches_trains_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "loop"
    loop(run_dir)
    for stage in ("iter0/search", "iter0/train_both", "iter1/search"):
        assert (run_dir / stage / "metrics.json").exists(), stage
    assert not list((run_dir / "iter1").glob("train*"))  # the last iteration only searches
    train = json.loads((run_dir / "iter0" / "train_both" / "metrics.json").read_text())
    assert train["n_examples"] == 4 and train["base_model"] == "embedded:smollm2-135m-instruct"
    AutoModelForCausalLM.from_pretrained(run_dir / "iter0" / "train_both" / "merged")  # the next iteration's model
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["iteration"] for r in summary["search"]] == [0, 1]
    assert (run_dir / "learning.png").stat().st_size > 0

    wandb = {d: run_contents(next((run_dir / d / "wandb").glob("offline-run-*")))
             for d in (".", "iter0/search", "iter0/train_both", "iter1/search")}
    assert {w["run"].run_group for w in wandb.values()} == {"demo"}  # one group per experiment
    assert wandb["iter1/search"]["run"].display_name.endswith("/iter1/search")
    assert wandb["iter1/search"]["config"]["loop"]["name"] == "demo"  # the loop's axes are in every stage's config
    rows = [r for r in wandb["."]["history"] if "search/vote_pass2" in r]  # the loop run: one row per iteration
    assert [r["iteration"] for r in rows] == [0, 1]
    assert [r["search/vote_pass2"] for r in rows] == [summary["search"][i]["vote_pass2"] for i in (0, 1)]
    for key in ("top_code_share", "distinct_codes", "distinct_outputs"):  # diversity: a collapse shows at once
        assert [r[f"search/{key}"] for r in rows] == [summary["search"][i][key] for i in (0, 1)]
        assert 0 < summary["search"][0][key] <= (1 if key == "top_code_share" else 18)
    assert rows[0]["train/loss"] == train["train_loss"] and "train/both/loss" in rows[0]
    assert wandb["."]["exit_code"] == 0

    SearchRun(run_dir / "iter1" / "search").start()  # as if the loop was killed during the last search
    (run_dir / "iter1" / "search" / "metrics.json").unlink()
    again = loop(run_dir)
    assert f"{run_dir / 'iter0' / 'search'} is done: skipped" in again.stdout
    assert f"{run_dir / 'iter0' / 'train_both'} is done: skipped" in again.stdout
    assert (run_dir / "iter1" / "search" / "metrics.json").exists()
