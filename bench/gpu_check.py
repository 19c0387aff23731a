"""CUDA smoke check of the finetune and generation paths (run on a GPU machine; no vLLM or hub access needed).

    python bench/gpu_check.py --model DIR --examples FILE.jsonl [--out DIR] [--arch qwen7b --recipes paper]

DIR holds a model's config and tokenizer (weights optional: without them the architecture is built with random
weights, enough to exercise every CUDA path). FILE is a train job's examples.jsonl (real hindsight examples).
Runs soar.finetune.finetune on CUDA with the CPU-sized recipe (finetune=cpu_tiny) and the paper recipe
(finetune=paper: rsLoRA r=256, gradient checkpointing, bf16 weights), then generates with the merged model through
the transformers engine. `--arch qwen7b` builds Qwen2.5-Coder-7B's shape instead (random weights, DIR's
tokenizer) to time the paper recipe at the paper's scale. Prints one RESULT line per check.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from soar.engines.base import Sampling
from soar.engines.hf_engine import HFEngine
from soar.finetune.data import read_examples
from soar.finetune.recipe import finetune
from soar.hardware import detect
from soar.prompts import code_end

CONF = Path(__file__).resolve().parents[1] / "conf"


# Qwen2.5-Coder-7B-Instruct's shape (the paper's main model), for timing the paper recipe at scale
QWEN_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0,
           "rms_norm_eps": 1e-6, "tie_word_embeddings": False}


def model_dir(src: Path, work: Path, arch: str) -> Path:
    """`src` itself when it has weights (and arch=src), else random bf16 weights of the architecture: src's own,
    or qwen7b = Qwen2.5-Coder-7B's shape with src's tokenizer (its vocabulary)."""
    if arch == "src" and any(src.glob("*.safetensors")):
        return src
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(src)
    config = AutoConfig.from_pretrained(src) if arch == "src" else Qwen2Config(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        **QWEN_7B)
    torch.manual_seed(0)
    with torch.device("cuda"):  # initialise on the GPU: seconds instead of minutes at 7B
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    out = work / f"random-{arch}"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def recipe(name: str, base: Path, n_examples: int) -> DictConfig:
    """conf/finetune/<name>.yaml on the weights in `base`, one epoch over `n_examples`."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        ft = compose("train", overrides=[f"finetune={name}", f"model.path={base}"]).finetune
    ft.max_examples, ft.epochs = n_examples, 1
    ft.trainer.progress_bar = False
    return ft


def check_finetune(name: str, base: Path, examples: list, work: Path) -> Path:
    torch.cuda.reset_peak_memory_stats()
    ft = recipe(name, base, len(examples))
    m = finetune(examples, ft, work / name)
    print(f"RESULT finetune_{name} device={m['device']} precision={m['precision']} ({ft.trainer.precision}) "
          f"steps={m['steps']} "
          f"lora_r={ft.lora.r} grad_ckpt={ft.gradient_checkpointing} loss_first={m['train_loss_first_step']:.4f} "
          f"loss_last={m['train_loss_last_step']:.4f} tokens={m['n_tokens']} train_s={m['train_seconds']:.1f} "
          f"tok_s={m['tokens_per_s']:.0f} "
          f"peak_gb={torch.cuda.max_memory_allocated() / 2**30:.2f} merge_s={m['merge_seconds']:.1f}", flush=True)
    return work / name / "merged"


def check_generate(merged: Path, examples: list) -> None:
    """The transformers engine on CUDA with its default dtype (auto), the stop-at-code rule and the live progress
    callback of a search (random weights rarely write a closing fence: `stopped` counts the answers it ended)."""
    engine = HFEngine(str(merged), sampling=Sampling(temperature=1.0, min_p=0.05, seed=0), device="cuda")
    prompt = engine.encode(examples[0].messages)
    calls: list[tuple[int, int]] = []
    t = time.perf_counter()
    [completions] = engine.generate([prompt], n=16, max_tokens=256, stop=code_end,
                                    on_progress=lambda tokens, finished: calls.append((tokens, finished)))
    seconds = time.perf_counter() - t
    tokens = sum(c.n_tokens for c in completions)
    stopped = sum(code_end(c.text) == len(c.text) for c in completions)
    print(f"RESULT generate device={engine.device} dtype={engine.dtype} (auto on {detect(True)}) "
          f"weights={next(engine.model.parameters()).dtype} prompt_tokens={len(prompt)} n=16 tokens={tokens} "
          f"tok_s={tokens / seconds:.0f} progress_calls={len(calls)} stopped={stopped}", flush=True)
    print("sample completion:", json.dumps(completions[0].text[:200]))
    engine.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--examples", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--n", type=int, default=64, help="examples per finetune")
    p.add_argument("--arch", choices=("src", "qwen7b"), default="src", help="architecture to build (random weights)")
    p.add_argument("--recipes", default="cpu_tiny,paper", help="finetune configs to run, comma-separated")
    p.add_argument("--no-generate", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    print(f"torch {torch.__version__} cuda {torch.version.cuda} device {torch.cuda.get_device_name()} "
          f"bf16 {torch.cuda.is_bf16_supported()}", flush=True)
    examples = read_examples(args.examples)[: args.n]
    work = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    base = model_dir(args.model, work, args.arch)
    merged = [check_finetune(name, base, examples, work) for name in args.recipes.split(",")][-1]
    if not args.no_generate:
        check_generate(merged, examples)


if __name__ == "__main__":
    main()
