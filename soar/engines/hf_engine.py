"""transformers `generate` engine: the fallback (no vLLM needed) and the baseline of bench/generate.py."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soar.engines.base import Completion, OnProgress, Sampling, StopRule
from soar.hardware import choose_dtype, detect


class HFEngine:
    name = "hf"

    def __init__(
        self, path: str, *, sampling: Sampling, lora: str | None = None, dtype: str = "auto",
        max_model_len: int = 8192, device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.max_model_len = max_model_len
        self.sampling = sampling
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = choose_dtype(dtype, detect(self.device == "cuda"))
        self.gpus = 1 if self.device.startswith("cuda") else 0
        self.tokenizer: Any = AutoTokenizer.from_pretrained(path)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype))
        if lora is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, lora)
        self.model = model.to(self.device).eval()
        self.generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        torch.manual_seed(sampling.seed)

    def encode(self, messages: list[dict[str, str]], answer_prefix: str = "") -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text + answer_prefix, add_special_tokens=False).input_ids

    def generate(self, prompts: Sequence[list[int]], n: int, max_tokens: int, *, stop: StopRule | None = None,
                 on_progress: OnProgress | None = None) -> list[list[Completion]]:
        import torch

        results: list[list[Completion]] = []
        tokens = finished = 0
        for ids in prompts:  # one prompt at a time, its n samples as one batch
            inp = torch.tensor([ids], device=self.device)
            watch = _Watch(self.tokenizer, len(ids), stop, lambda step, done=tokens, fin=finished: (
                on_progress and on_progress(done + step * n, fin)))
            with torch.inference_mode():
                out = self.model.generate(
                    inp, attention_mask=torch.ones_like(inp), do_sample=True, num_return_sequences=n,
                    temperature=self.sampling.temperature, min_p=self.sampling.min_p, top_k=0, top_p=1.0,
                    max_new_tokens=max_tokens, pad_token_id=self.tokenizer.eos_token_id, stopping_criteria=[watch],
                )
            completions = []
            for row, seq in enumerate(out[:, len(ids):].tolist()):
                if row in watch.stopped_at:
                    seq = seq[: watch.stopped_at[row]]
                elif self.tokenizer.eos_token_id in seq:
                    seq = seq[: seq.index(self.tokenizer.eos_token_id) + 1]
                text = self.tokenizer.decode(seq, skip_special_tokens=True)
                cut = stop(text) if stop is not None else None
                completions.append(Completion(text if cut is None else text[:cut], len(seq), len(ids)))
            results.append(completions)
            tokens += sum(c.n_tokens for c in completions)
            finished += n
            if on_progress is not None:
                on_progress(tokens, finished)
        return results

    def close(self) -> None:
        del self.model


class _Watch:
    """A transformers stopping criterion: reports progress each step and ends a sequence once `stop` fires on its
    text (checked only when the new token has a backtick: a code fence)."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: StopRule | None, on_step: Any) -> None:
        self.tokenizer, self.prompt_len, self.stop, self.on_step = tokenizer, prompt_len, stop, on_step
        self.stopped_at: dict[int, int] = {}  # row -> generated tokens kept

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids.shape[1] - self.prompt_len
        self.on_step(generated)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.stop is None:
            return done
        for row in range(input_ids.shape[0]):
            if row in self.stopped_at:
                done[row] = True
            elif "`" in self.tokenizer.decode(input_ids[row, -1:]):
                text = self.tokenizer.decode(input_ids[row, self.prompt_len:], skip_special_tokens=True)
                if self.stop(text) is not None:
                    self.stopped_at[row] = generated
                    done[row] = True
        return done
