"""Finetuning throughput: soar's length-grouped micro-batches against a padded, unbucketed baseline.

Data: real ARC-AGI-1 training tasks rendered with the real prompt builders, as hindsight builds them (spec §9.2):
half sampling prompts (`sampling_messages`, no few-shot), half refinement prompts (`refinement_messages` with the
task's inputs as the parent's wrong outputs); responses are the real programs of examples/replay_demo.jsonl
(right, wrong and hostile alike: only their text is used) in the prompts' python fence. `--n` examples drawn at
random (seeded) among those that fit `--max-seq-len`, so lengths vary as in real data.
Model: the embedded SmolLM2-135M-Instruct (or `--model`) with a fresh rsLoRA (r 16, all 7 projections).

Both arms run the same training step (soar.finetune.module.LoraModule.summed_loss: response-only loss, logits at
labelled positions only; AdamW step per micro-batch of `--micro` examples) under the same precision:
(1) ours:     LengthGroupedBatches (shuffle, sort windows by length, batch, shuffle batches), each micro-batch padded
              to its own longest example;
(2) baseline: random order, every micro-batch padded to the longest example of the whole data set (a fixed-shape
              pipeline; padding to max_seq_len would be slower still).
The arms take turns, one micro-batch each (so other load on the machine hits both alike), until each has trained
`--seconds` or finished its epoch; each arm's first micro-batch is an untimed warm-up. tokens/s counts real
(non-pad) tokens only, over the time spent in that arm's steps. `--precision auto` (default) is the finetune's own
choice for this machine (soar.hardware: bf16 where it is native, else fp32); `--arms ours --precision fp32,bf16`
compares precisions instead. Peak memory: process max RSS on CPU, torch.cuda.max_memory_allocated on GPU.

Run: .venv/bin/python bench/finetune.py [--n 48 --micro 2 --max-seq-len 2048 --seconds 90 --precision auto]
The last line is `RESULT finetune ours_tok_s=<x> baseline_tok_s=<y> ratio=<x/y> peak_mem_gb=<z> precision=<p>
hardware="<device, model name, CPU features>"` (target ratio >= 1.5).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from soar.data import load_split
from soar.finetune.batches import Collator, LengthGroupedBatches, RandomBatches, TokenDataset, padding_fraction
from soar.finetune.data import ChatExample, tokenize_examples
from soar.hardware import choose_dtype, detect
from soar.prompts import fence, refinement_messages, sampling_messages
from soar.weights import EMBEDDED, resolve_model

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "examples" / "replay_demo.jsonl"


def synthetic_examples(seed: int) -> list[ChatExample]:
    """One sampling and one refinement example per ARC-AGI-1 training task, with real programs as responses."""
    codes = [json.loads(line)["code"] for line in PROGRAMS.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out = []
    for tid, task in sorted(load_split("arc_agi_1", "training").items()):
        code = rng.choice(codes)
        response = fence(code)
        out.append(ChatExample(sampling_messages(task), response, tid, "sample"))
        parent_outputs = [p.input for p in task.train] + [p.input for p in task.test]  # identity: wrong, realistic
        flags = [p.input == p.output for p in task.train]
        out.append(ChatExample(refinement_messages(task, rng.choice(codes), parent_outputs, flags), response, tid,
                               "refine"))
    return out


def peak_mem_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class Arm:
    """One way of batching (and a precision): its batches, collator, and what it has trained so far."""

    def __init__(self, name: str, batches: list[list[int]], collate: Collator, precision: str) -> None:
        self.name, self.batches, self.collate, self.precision = name, batches, collate, precision
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.next, self.tokens, self.seconds, self.done = 0, 0, 0.0, []

    def step(self, module, optimizer, dataset, device) -> None:
        idx = self.batches[self.next % len(self.batches)]
        self.next += 1
        start = time.perf_counter()
        batch = {k: v.to(device) for k, v in self.collate([dataset[i] for i in idx]).items()}
        with torch.autocast(device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            loss_sum, n = module.summed_loss(batch)
        (loss_sum / max(n, 1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if self.next > 1:  # the first micro-batch of each arm is a warm-up, untimed
            self.seconds += time.perf_counter() - start
            self.tokens += int(batch["attention_mask"].sum())
            self.done.append(idx)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")


def run_interleaved(arms: list[Arm], module, optimizer, dataset, device, seconds: float) -> None:
    """Arms take turns, one micro-batch each, until every arm has trained `seconds` (or met its epoch's end), so a
    slowdown of the machine (other jobs) hits all arms alike."""
    for arm in arms:
        arm.step(module, optimizer, dataset, device)
    while any(a.seconds < seconds and len(a.done) < len(a.batches) - 1 for a in arms):
        for arm in arms:
            if arm.seconds < seconds and len(arm.done) < len(arm.batches) - 1:
                arm.step(module, optimizer, dataset, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=EMBEDDED)
    ap.add_argument("--n", type=int, default=48, help="examples in the data set")
    ap.add_argument("--micro", type=int, default=2, help="examples per micro-batch (conf/finetune/cpu_tiny.yaml: 2)")
    ap.add_argument("--max-seq-len", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=90.0, help="timed training per arm")
    ap.add_argument("--precision", default="auto",
                    help="auto (soar.hardware's choice) | fp32 | bf16 | fp16, or a list (fp32,bf16): one arm each")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--arms", default="ours,baseline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from soar.finetune.lora import load_lora_model
    from soar.finetune.module import LoraModule

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hardware = detect(device.type == "cuda")
    short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
    args.precision = ",".join(short[choose_dtype("auto", hardware, "--precision")] if p == "auto" else p
                              for p in args.precision.split(","))
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pool = synthetic_examples(args.seed)
    tok = tokenize_examples(tokenizer, pool, args.max_seq_len)
    rng = random.Random(args.seed)
    chosen = sorted(rng.sample(tok.kept, min(args.n, len(tok.kept))))
    examples = [pool[i] for i in chosen]
    data = tokenize_examples(tokenizer, examples, args.max_seq_len)
    lengths = data.lengths
    mean = sum(lengths) / len(lengths)
    print(f"data: {len(lengths)} examples of {min(lengths)}-{max(lengths)} tokens (mean {mean:.0f}); "
          f"{tok.n_dropped} of {len(pool)} candidates were over --max-seq-len {args.max_seq_len}")

    ft = OmegaConf.create({
        "quantization": None, "attn_implementation": "sdpa", "load_dtype": "float32", "gradient_checkpointing": False,
        "lora": {"r": args.rank, "alpha": 32, "dropout": 0.0, "rslora": True,
                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}})
    torch.manual_seed(args.seed)
    model = load_lora_model(ft, path).to(device)
    module = LoraModule(model, None)
    params = [p for p in model.parameters() if p.requires_grad]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    dataset = TokenDataset(data)
    arm_batches = {
        "ours": (LengthGroupedBatches(lengths, args.micro, seed=args.seed).epoch_batches(0), Collator(pad_id)),
        "baseline": (RandomBatches(lengths, args.micro, seed=args.seed).epoch_batches(0),
                     Collator(pad_id, max(lengths))),
    }
    arms = [Arm(f"{name}/{prec}" if "," in args.precision else name, *arm_batches[name], prec)
            for prec in args.precision.split(",") for name in args.arms.split(",")]
    optimizer = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.05)
    print(f"arms take turns, {args.seconds:.0f} s of training each, micro-batches of {args.micro}, {device.type}, "
          f"{torch.get_num_threads()} threads")
    run_interleaved(arms, module, optimizer, dataset, device, args.seconds)
    print(f"{'arm':14} {'tok/s':>8} {'batches':>8} {'padding':>8}")
    for arm in arms:
        padding = padding_fraction(arm.done, lengths, arm.collate.pad_to)
        print(f"{arm.name:14} {arm.rate:8.1f} {len(arm.done):8d} {padding:8.1%}")
    rates = {a.name: a.rate for a in arms}
    ours = rates.get("ours", arms[0].rate)
    base = rates.get("baseline", arms[-1].rate)
    print(f"RESULT finetune ours_tok_s={ours:.1f} baseline_tok_s={base:.1f} ratio={ours / base:.2f} "
          f'peak_mem_gb={peak_mem_gb():.2f} precision={args.precision} hardware="{hardware}"')


if __name__ == "__main__":
    main()
