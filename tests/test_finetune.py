"""soar.finetune: response-only labels (real SmolLM2 tokenizer), length-grouped batches, a real Lightning + PEFT
finetune of a tiny random Llama (loss, adapter, merged model, resume, skip), and train.py's config and errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from soar.finetune.batches import LengthGroupedBatches, RandomBatches, padding_fraction
from soar.finetune.data import (
    IGNORE,
    ChatExample,
    read_examples,
    split_chat,
    tokenize_examples,
    write_examples,
)
from soar.finetune.recipe import finetune
from soar.finetune.run import run_train
from soar.weights import EMBEDDED, resolve_model

RESPONSE = "```python\ndef transform(grid):\n    return [row[::-1] for row in grid]\n```"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(EMBEDDED))


def chat(user: str, response: str = RESPONSE) -> ChatExample:
    return ChatExample([{"role": "system", "content": "You are an ARC solver."}, {"role": "user", "content": user}],
                       response, task_id="t", kind="sample", program_id="p")


def cfg_for(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


# -- tokenisation -----------------------------------------------------------------------------------------------
def test_labels_cover_exactly_the_response_and_end_of_turn(tokenizer):
    ex = chat("## Input 1 (grid shape: 2 by 2):\n[[1 2]\n [3 4]]\nSolve it.")
    data = tokenize_examples(tokenizer, [ex], max_seq_len=4096)
    ids, labels = data.input_ids[0], data.labels[0]
    prompt_ids = list(tokenizer.apply_chat_template(ex.messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)["input_ids"])
    n = len(prompt_ids)
    assert ids[:n] == prompt_ids  # the prompt exactly as at inference, assistant header included
    assert tokenizer.decode(ids[:n]).endswith("Solve it.<|im_end|>\n<|im_start|>assistant\n")
    assert labels[:n] == [IGNORE] * n
    assert labels[n:] == ids[n:] and all(y != IGNORE for y in labels[n:])
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")  # end of turn learned, trailing "\n" not used
    assert tokenizer.decode([y for y in labels if y != IGNORE]) == RESPONSE + "<|im_end|>"
    assert split_chat(tokenizer, ex.messages, ex.response)[1] == RESPONSE + "<|im_end|>"


def test_long_examples_are_dropped_and_counted_never_truncated(tokenizer):
    short, long = chat("a small task"), chat("grid " * 3000)
    data = tokenize_examples(tokenizer, [short, long, short], max_seq_len=512)
    assert data.n_dropped == 1 and data.kept == [0, 2] and data.dropped_lengths[0] > 3000
    assert all(len(x) <= 512 and x[-1] == tokenizer.eos_token_id for x in data.input_ids)


def test_examples_jsonl_roundtrip(tmp_path):
    exs = [chat("one"), chat("two", "```python\nx = 1\n```")]
    write_examples(tmp_path / "examples.jsonl", exs)
    assert read_examples(tmp_path / "examples.jsonl") == exs


# -- length grouping ---------------------------------------------------------------------------------------------
def test_length_grouped_batches():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(200, 4000) for _ in range(1000)]
    sampler = LengthGroupedBatches(lengths, 4, group_size=32, seed=7)
    for epoch in (0, 1):
        batches = sampler.epoch_batches(epoch)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(1000))  # every example exactly once per epoch
        assert len(batches) == len(sampler)
    assert sampler.epoch_batches(0) == LengthGroupedBatches(lengths, 4, group_size=32, seed=7).epoch_batches(0)
    assert sampler.epoch_batches(0) != sampler.epoch_batches(1)  # reshuffled each epoch
    assert sampler.epoch_batches(0) != LengthGroupedBatches(lengths, 4, group_size=32, seed=8).epoch_batches(0)
    ours = padding_fraction(sampler.epoch_batches(0), lengths)
    unbucketed = padding_fraction(RandomBatches(lengths, 4, seed=7).epoch_batches(0), lengths)
    assert ours < 0.05 and unbucketed > 0.3 and ours < unbucketed / 8
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in sampler.epoch_batches(0)]
    assert sum(spread) / len(spread) < 150  # similar lengths within a batch
    sampler.set_epoch(1)
    assert list(sampler) == sampler.epoch_batches(1)
    # ranks: disjoint shares of equal size that cover the epoch
    shards = [list(LengthGroupedBatches(lengths, 4, seed=7, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(LengthGroupedBatches(lengths, 4, seed=7, world_size=3))
    assert {i for s in shards for b in s for i in b} == set(range(1000))


# -- a real finetune of a tiny random model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tokenizer, tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_cfg(base: Path, *extra: str, logger: str = "none") -> DictConfig:
    return cfg_for([f"model.path={base}", f"logger={logger}", "finetune.epochs=2", "finetune.optim.lr=5e-3",
                    "finetune.batch.size=4", "finetune.batch.micro_size=2", "finetune.lora.r=8",
                    "finetune.trainer.precision=32-true", *extra])


def tiny_examples() -> list[ChatExample]:
    return [chat(f"Task {i}: " + "grid " * (3 + 5 * i), f"```python\ndef transform(grid):\n    return grid[::{i + 1}]\n```")
            for i in range(4)] * 4


def test_no_attention_mask_needed_with_right_padding(tiny_model, tokenizer):
    from omegaconf import OmegaConf

    from soar.finetune.batches import Collator
    from soar.finetune.lora import load_lora_model
    from soar.finetune.module import LoraModule

    ft = OmegaConf.merge(tiny_cfg(tiny_model).finetune, {"lora": {"dropout": 0.0}})
    module = LoraModule(load_lora_model(ft, str(tiny_model)).eval(), ft.optim)
    data = tokenize_examples(tokenizer, tiny_examples()[:4], 1024)
    batch = Collator(tokenizer.pad_token_id)(list(zip(data.input_ids, data.labels)))
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        batched, n = module.summed_loss(batch)
        single = sum(module.summed_loss(Collator(0)([(x, y)]))[0] for x, y in zip(data.input_ids, data.labels))
        base = module.model.get_base_model()
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        keep = batch["labels"][:, 1:] != IGNORE
        masked = torch.nn.functional.cross_entropy(logits[keep].float(), batch["labels"][:, 1:][keep], reduction="sum")
    assert n == sum(sum(y != IGNORE for y in lab) for lab in data.labels)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(batched, masked, rtol=1e-4, atol=1e-3)


class CrashAtEpoch:
    """Raises at the start of an epoch (after the previous epoch's checkpoint was written)."""

    def __new__(cls, epoch: int):
        import pytorch_lightning as pl

        class _Crash(pl.Callback):
            def on_train_epoch_start(self, trainer, module):
                if trainer.current_epoch == epoch:
                    raise RuntimeError("simulated crash")

        return _Crash()


class CrashAtStep:
    """Raises after optimizer step `step` (before that step's checkpoint: Lightning runs checkpoint callbacks last)."""

    def __new__(cls, step: int):
        import pytorch_lightning as pl

        class _Crash(pl.Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step == step:
                    raise RuntimeError("simulated crash")

        return _Crash()


@pytest.mark.slow
def test_a_step_checkpoint_resumes_mid_epoch_exactly(tiny_model, tmp_path):
    """checkpoint.every_n_steps: killed in the middle of an epoch, the run resumes from the last step checkpoint on
    the micro-batches not trained on yet, and ends exactly where an uninterrupted run ends."""
    cfg = tiny_cfg(tiny_model, "finetune.checkpoint.every_n_steps=1", "finetune.batch.group_size=1")
    whole = finetune(tiny_examples(), cfg.finetune, tmp_path / "whole", seed=0)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(tiny_examples(), cfg.finetune, run, seed=0, callbacks=[CrashAtStep(3)])  # epoch 0 has 4 steps
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2 and state["epoch"] == 0  # saved mid-epoch
    resumed = finetune(tiny_examples(), cfg.finetune, run, seed=0)
    assert resumed["steps"] == whole["steps"] == 8
    history = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "whole" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == list(range(1, 9))
    assert [r["label_tokens"] for r in history] == [r["label_tokens"] for r in reference]  # the same batches
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in reference], rel=1e-4)
    assert resumed["train_loss_by_epoch"] == pytest.approx(whole["train_loss_by_epoch"], rel=1e-4)

    at_epoch = tmp_path / "at_epoch"  # an epoch-end checkpoint resumes with the next epoch's order
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(tiny_examples(), cfg.finetune, at_epoch, seed=0, callbacks=[CrashAtEpoch(1)])
    assert finetune(tiny_examples(), cfg.finetune, at_epoch, seed=0)["train_loss_by_epoch"] == pytest.approx(
        whole["train_loss_by_epoch"], rel=1e-4)


@pytest.mark.slow
def test_finetune_trains_saves_merges_resumes_and_skips(tiny_model, tokenizer, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = tiny_cfg(tiny_model)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(tiny_examples(), cfg.finetune, run, seed=0, callbacks=[CrashAtEpoch(1)])
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "metrics.json").exists()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])  # adapter only, no base weights

    metrics = finetune(tiny_examples(), cfg.finetune, run, seed=0)  # resumes at epoch 1
    assert metrics["resumed_from"].endswith("last.ckpt")
    assert metrics["steps"] == 8 and metrics["n_train"] == 16 and metrics["n_dropped"] == 0
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))  # epoch 0 before the crash, epoch 1 after the resume
    losses = metrics["train_loss_by_epoch"]
    assert len(losses) == 2 and losses[1] < losses[0] - 0.1, losses
    assert metrics["tokens_per_s"] > 0 and metrics["padding_fraction"] < 0.5
    assert json.loads((run / "metrics.json").read_text())["steps"] == 8

    # adapter: PEFT reloads it (vLLM LoRARequest reads the same two files); rsLoRA recorded
    adapter_cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["use_rslora"] and adapter_cfg["r"] == 8
    assert set(adapter_cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(run / "merged").eval()
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, peft_model(ids).logits, rtol=1e-3, atol=1e-3)
        out = merged.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids.shape[1]
    assert (run / "merged" / "tokenizer_config.json").exists()

    again = finetune(tiny_examples(), cfg.finetune, run, seed=0)  # finished: skipped
    assert again["skipped"] and again["steps"] == 8


# -- the train.py job ----------------------------------------------------------------------------------------------
def test_paper_configs_pass_the_checks():
    from soar.finetune.checks import check_finetune_config
    from soar.finetune.cluster import resolve_precision
    from soar.hardware import Hardware

    paper = cfg_for(["finetune=paper"]).finetune
    check_finetune_config(paper)
    assert paper.lora.r == 256 and paper.lora.alpha == 32 and paper.lora.rslora and paper.epochs == 3
    assert paper.batch.size == 32 and paper.optim.weight_decay == 0.05 and paper.optim.warmup_ratio == 0.1
    h200, epyc_avx2 = Hardware("cuda", "NVIDIA H200", ("bf16",)), Hardware("cpu", "AMD EPYC", ("avx2",))
    assert resolve_precision(paper.trainer.precision, h200) == "bf16-mixed"
    assert resolve_precision("auto", h200) == "bf16-mixed"
    assert resolve_precision("auto", epyc_avx2) == "32-true"
    assert resolve_precision("32-true", h200) == "32-true"


def test_train_cli_composes():
    out = subprocess.run([sys.executable, "train.py", "--cfg", "job", "finetune=paper"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "r: 256" in out.stdout and "lr: 5.0e-05" in out.stdout and "mode: both" in out.stdout


@pytest.mark.parametrize("override, message", [
    ([], "finetune.archives is empty"),
    (["finetune.archives=[/nonexistent/search_run]"], "finetune.archives: /nonexistent/search_run has no programs"),
    (["finetune.data.mode=everything"], "finetune.data.mode='everything'"),
    (["finetune.data.sample_selection=best"], "finetune.data.sample_selection='best'"),
    (["model.path=/nonexistent/model"], "finetune.base_model (by default the model group's model.path)='/nonexistent/model'"),
    (["finetune.quantization=int3"], "finetune.quantization='int3'"),
    (["finetune.lora.r=0"], "finetune.lora.r=0"),
    (["finetune.batch.size=6", "finetune.batch.micro_size=4"], "finetune.batch.size=6"),
    pytest.param(["finetune=paper_qlora"], "finetune.quantization=nf4 (QLoRA) needs a CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only message")),
])
def test_train_job_errors_name_the_key(tmp_path, override, message):
    archives = [] if any(o.startswith("finetune.archives") for o in override) or not override else [f"finetune.archives=[{tmp_path}]"]
    if archives:  # a finished search run dir (soar.runs: its outputs, no marker)
        (tmp_path / "programs.parquet").mkdir()
        (tmp_path / "metrics.json").write_text("{}")
        (tmp_path / "tasks.json").write_text("{}")
    cfg = cfg_for(["logger=none", *archives, *override])
    with pytest.raises((ValueError, FileNotFoundError, RuntimeError), match=re.escape(message)):
        run_train(cfg, tmp_path / "run")


@pytest.mark.slow
def test_train_job_end_to_end_on_a_real_archive(tiny_model, tmp_path, executor):
    """Archive of executed programs -> soar.hindsight examples -> finetune -> an offline W&B run of job_type
    train; a second run is skipped."""
    from wandb_records import run_contents

    from soar.archive import ProgramArchive, program_row
    from soar.data import load_split
    from soar.scoring import score_program

    split = load_split("arc_agi_1", "training")
    codes = ["def transform(grid):\n    return [row[::-1] for row in grid[::-1]]",
             "def transform(grid):\n    return grid[::-1]",
             "def transform(grid):\n    return [list(r) for r in zip(*grid)]"]
    search = tmp_path / "search"
    archive = ProgramArchive(search / "programs.parquet")
    for tid in ("6150a2bd", "3c9b0459"):
        task = split[tid]
        outs = executor.run([(c, task.inputs) for c in codes])
        archive.append([program_row(task, c, o, score_program(task, o), program_id=f"{tid}/{i}", kind="sample")
                        for i, (c, o) in enumerate(zip(codes, outs))])
    (search / "metrics.json").write_text("{}")  # a finished search run dir (soar.runs: its outputs, no marker)
    (search / "tasks.json").write_text("{}")
    no_refinements = tiny_cfg(tiny_model, f"finetune.archives=[{search}]", "finetune.data.mode=refine")
    with pytest.raises(ValueError, match=r"mode=refine.*6 programs on 2 task\(s\).*\(0 of 0 children\)"):
        run_train(no_refinements, tmp_path / "empty")  # a clear error, before any model is loaded
    relabelled = tiny_cfg(tiny_model, f"finetune.archives=[{search}]", "finetune.data.mode=refine",
                          "finetune.data.refine_relabel=true")
    with pytest.raises(ValueError, match=r"refine_relabel.*\(0 of 0 children reproduce them, 0 are code duplicates\)"):
        run_train(relabelled, tmp_path / "empty_relabelled")  # in the terms of refinement relabelling
    cfg = tiny_cfg(tiny_model, f"finetune.archives=[{search}]", "finetune.epochs=1", "finetune.max_seq_len=1024",
                   "iteration=3", logger="wandb")
    run = tmp_path / "train"
    run.mkdir()
    metrics = run_train(cfg, run)
    examples = read_examples(run / "examples.jsonl")
    stats = json.loads((run / "data_stats.json").read_text())
    assert len(examples) == stats["examples"]["total"] == metrics["n_examples"] > 0
    assert {e.task_id for e in examples} == {"6150a2bd", "3c9b0459"} and all(e.kind == "sample" for e in examples)
    assert metrics["iteration"] == 3 and metrics["data"] == stats and metrics["steps"] >= 1
    assert (run / "merged" / "config.json").exists() and (run / "adapter" / "adapter_config.json").exists()
    assert run_train(cfg, run) == json.loads((run / "metrics.json").read_text())  # finished: skipped
    (offline,) = (run / "wandb").glob("offline-run-*")
    for _ in range(50):  # the W&B service may still be flushing the file after run.finish() returned
        wb = run_contents(offline)
        if wb["run"] is not None and wb["exit_code"] is not None:
            break
        time.sleep(0.2)
    assert wb["run"].job_type == "train" and wb["exit_code"] == 0 and wb["config"]["iteration"] == 3
    steps = [row for row in wb["history"] if "train/loss" in row]
    assert len(steps) == metrics["steps"] and all("train/lr" in r and "train/tokens_per_s" in r for r in steps)
    assert wb["summary"]["train/n_examples"] == len(examples) and "train/data/examples/total" in wb["summary"]
