"""The base model with a fresh (rs)LoRA adapter, optional 4-bit QLoRA, and the merged export.

Training always starts from `finetune.base_model` (the instruct model), never from an earlier iteration.
"""
from __future__ import annotations

import gc
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from soar.io import replace_dir
from soar.weights import resolve_model

QUANTIZATIONS = (None, "nf4")
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def base_model_path(ft: DictConfig) -> str:
    """`finetune.base_model` as a loadable directory or cached hub id; a clear error naming the key otherwise."""
    key = "finetune.base_model (by default the model group's model.path)"
    try:
        path = resolve_model(str(ft.base_model))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{key}={ft.base_model!r}: {e}") from None
    if not Path(path).exists():  # a hub id: it must be in the local cache (nothing is downloaded at run time)
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(path, "config.json"), str):
            raise FileNotFoundError(
                f"{key}={ft.base_model!r}: neither a local model directory nor a hub id in the local "
                "Hugging Face cache (download it first, e.g. `huggingface-cli download <id>`)")
    return path


def check_quantization(quantization: str | None) -> None:
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"finetune.quantization={quantization!r}: allowed: null (LoRA) or 'nf4' (QLoRA)")
    if quantization == "nf4":
        if not torch.cuda.is_available():
            raise RuntimeError("finetune.quantization=nf4 (QLoRA) needs a CUDA GPU; set finetune.quantization=null")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("finetune.quantization=nf4 (QLoRA) needs bitsandbytes: pip install bitsandbytes")


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))


def load_lora_model(ft: DictConfig, path: str) -> Any:
    """The base causal LM from `path` with a fresh trainable LoRA adapter; only adapter weights require grad."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    check_quantization(ft.quantization)
    kwargs: dict[str, Any] = {"attn_implementation": ft.attn_implementation}
    if ft.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": _local_rank()}
        kwargs["dtype"] = torch.bfloat16
    else:
        kwargs["dtype"] = DTYPES[ft.load_dtype]
    model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    if ft.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(ft.gradient_checkpointing))
    elif ft.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = ft.lora
    config = LoraConfig(
        r=int(lora.r), lora_alpha=lora.alpha, lora_dropout=float(lora.dropout), use_rslora=bool(lora.rslora),
        target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    model.train()  # from_pretrained returns eval mode; LoRA dropout and gradient checkpointing need train mode
    return model


def save_merged(base_path: str, adapter_dir: Path, out: Path, tokenizer: Any, save_dtype: str = "auto") -> None:
    """Reload the base model unquantised in `save_dtype`, fold the adapter in, save a plain HF model directory
    with the tokenizer (`AutoModelForCausalLM.from_pretrained(out)` and vLLM load it). `save_dtype` auto = the
    base checkpoint's dtype. PEFT computes B @ A in float32 and adds it to the weight, so a 16-bit reload loses
    nothing but the final rounding, and needs half the memory of a float32 one (a 72B model: 144 GB of RAM).
    Written to a temp dir and renamed: all or nothing."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    if save_dtype not in DTYPES:
        raise ValueError(f"finetune.save_dtype={save_dtype!r}: allowed: {', '.join(DTYPES)}")
    dtype = DTYPES[save_dtype]
    if dtype == "auto":
        config = AutoConfig.from_pretrained(base_path)
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
        dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    try:
        with replace_dir(out) as tmp:
            merged.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    finally:
        del merged, base
        gc.collect()
