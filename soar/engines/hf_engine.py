"""transformers `generate` engine: the fallback (no vLLM needed) and the baseline of bench/generate.py."""
from __future__ import annotations

from collections.abc import Sequence

from soar.engines.base import Completion, Sampling


class HFEngine:
    name = "hf"

    def __init__(
        self, path: str, *, sampling: Sampling, lora: str | None = None, dtype: str = "bfloat16",
        max_model_len: int = 8192, device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.max_model_len = max_model_len
        self.sampling = sampling
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        if lora is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, lora)
        self.model = model.to(self.device).eval()
        self.generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        torch.manual_seed(sampling.seed)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int) -> list[list[Completion]]:
        import torch

        results = []
        for ids in prompts:  # one prompt at a time, its n samples as one batch
            inp = torch.tensor([ids], device=self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    inp, attention_mask=torch.ones_like(inp), do_sample=True, num_return_sequences=n,
                    temperature=self.sampling.temperature, min_p=self.sampling.min_p, top_k=0, top_p=1.0,
                    max_new_tokens=max_tokens, pad_token_id=self.tokenizer.eos_token_id,
                )
            completions = []
            for seq in out[:, len(ids):].tolist():
                if self.tokenizer.eos_token_id in seq:
                    seq = seq[: seq.index(self.tokenizer.eos_token_id) + 1]
                completions.append(Completion(self.tokenizer.decode(seq, skip_special_tokens=True), len(seq)))
            results.append(completions)
        return results

    def close(self) -> None:
        del self.model
