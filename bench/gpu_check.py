"""CUDA smoke check of the finetune and generation paths (run on a GPU machine; no vLLM or hub access needed).

    python bench/gpu_check.py --model DIR --examples FILE.jsonl [--out DIR]

DIR holds a model's config and tokenizer (weights optional: without them the architecture is built with random
weights, enough to exercise every CUDA path). FILE is a train job's examples.jsonl (real hindsight examples).
Runs soar.finetune.finetune twice on CUDA, with the CPU-sized recipe (finetune=cpu_tiny) and with the paper recipe
(finetune=paper: rsLoRA r=256, gradient checkpointing, bf16 weights), then generates with the merged model through
the transformers engine. Prints one RESULT line per check.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from soar.engines.base import Sampling
from soar.engines.hf_engine import HFEngine
from soar.finetune import finetune
from soar.finetune.data import read_examples

CONF = Path(__file__).resolve().parents[1] / "conf" / "finetune"


def model_dir(src: Path, work: Path) -> Path:
    """`src` itself when it has weights, else a copy with random bf16 weights of the same architecture."""
    if any(src.glob("*.safetensors")):
        return src
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.bfloat16)
    out = work / "random-model"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def recipe(name: str, base: Path, n_examples: int) -> OmegaConf:
    ft = OmegaConf.merge(OmegaConf.load(CONF / "cpu_tiny.yaml"),
                         OmegaConf.load(CONF / f"{name}.yaml") if name != "cpu_tiny" else {})
    ft.pop("defaults", None)
    ft.base_model, ft.max_examples, ft.epochs = str(base), n_examples, 1
    ft.trainer.progress_bar = False
    return ft


def check_finetune(name: str, base: Path, examples: list, work: Path) -> Path:
    torch.cuda.reset_peak_memory_stats()
    ft = recipe(name, base, len(examples))
    m = finetune(examples, ft, work / name)
    print(f"RESULT finetune_{name} device={m['device']} precision={m['precision']} steps={m['steps']} "
          f"lora_r={ft.lora.r} grad_ckpt={ft.gradient_checkpointing} loss_first={m['train_loss_first_step']:.4f} "
          f"loss_last={m['train_loss_last_step']:.4f} tok_s={m['tokens_per_s']:.0f} "
          f"peak_gb={torch.cuda.max_memory_allocated() / 2**30:.2f} merge_s={m['merge_seconds']:.1f}", flush=True)
    return work / name / "merged"


def check_generate(merged: Path, examples: list) -> None:
    engine = HFEngine(str(merged), sampling=Sampling(temperature=1.0, min_p=0.05, seed=0), device="cuda")
    prompt = engine.encode(examples[0].messages)
    t = time.perf_counter()
    [completions] = engine.generate([prompt], n=16, max_tokens=256)
    seconds = time.perf_counter() - t
    tokens = sum(c.n_tokens for c in completions)
    print(f"RESULT generate device={engine.device} dtype={next(engine.model.parameters()).dtype} "
          f"prompt_tokens={len(prompt)} n=16 tokens={tokens} tok_s={tokens / seconds:.0f}", flush=True)
    print("sample completion:", json.dumps(completions[0].text[:200]))
    engine.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--examples", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--n", type=int, default=64, help="examples per finetune")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    print(f"torch {torch.__version__} cuda {torch.version.cuda} device {torch.cuda.get_device_name()} "
          f"bf16 {torch.cuda.is_bf16_supported()}", flush=True)
    examples = read_examples(args.examples)[: args.n]
    work = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    base = model_dir(args.model, work)
    check_finetune("cpu_tiny", base, examples, work)
    merged = check_finetune("paper", base, examples, work)
    check_generate(merged, examples)


if __name__ == "__main__":
    main()
