#!/usr/bin/env bash
# Run a command as if this CPU had AVX2 but no AVX-512, AVX-512 BF16 or AMX (the common laptop/cloud CPU where bf16
# has no native kernels). Usage: bench/avx2_only/run.sh .venv/bin/python search.py ...
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
exec "$@"
