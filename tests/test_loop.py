"""The self-improvement loop end to end (replayed searches, a real finetune of the embedded model), resuming after a
killed stage."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM

from soar.loop import forwarded, SEARCH_KEYS, TRAIN_KEYS

ROOT = Path(__file__).resolve().parents[1]


def loop(run_dir: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "soar.loop", f"hydra.run.dir={run_dir}", "iterations=2", "model=replay",
         "data=arc_agi_1", "logger=none", "execution.timeout_s=0.5", "finetune.max_examples=4", "seed=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_overrides_go_to_the_stages_that_know_them() -> None:
    overrides = ["data.limit=4", "model=qwen2_5_coder_7b", "search.sample.budget=8", "finetune.epochs=2",
                 "seed=3", "iterations=3", "+logger.tags=[a]"]
    assert forwarded(overrides, SEARCH_KEYS) == ["data.limit=4", "model=qwen2_5_coder_7b",
                                                 "search.sample.budget=8", "seed=3", "+logger.tags=[a]"]
    assert forwarded(overrides, TRAIN_KEYS) == ["data.limit=4", "finetune.epochs=2", "seed=3", "+logger.tags=[a]"]


def test_loop_searches_trains_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "loop"
    loop(run_dir)
    for stage in ("iter0/search", "iter0/train", "iter1/search"):
        assert (run_dir / stage / "metrics.json").exists(), stage
    assert not (run_dir / "iter1" / "train").exists()  # the last iteration only searches
    train = json.loads((run_dir / "iter0" / "train" / "metrics.json").read_text())
    assert train["n_examples"] == 4 and train["base_model"] == "embedded:smollm2-135m-instruct"
    AutoModelForCausalLM.from_pretrained(run_dir / "iter0" / "train" / "merged")  # the next iteration's model
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["iteration"] for r in summary["search"]] == [0, 1]
    assert (run_dir / "learning.png").stat().st_size > 0

    (run_dir / "iter1" / "search" / "metrics.json").unlink()  # as if the loop was killed during the last search
    again = loop(run_dir)
    assert f"{run_dir / 'iter0' / 'search'} is done: skipped" in again.stdout
    assert f"{run_dir / 'iter0' / 'train'} is done: skipped" in again.stdout
    assert (run_dir / "iter1" / "search" / "metrics.json").exists()
