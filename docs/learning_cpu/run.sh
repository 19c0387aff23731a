#!/usr/bin/env bash
# experiment=cpu_learning on 2 CPU cores: one iteration 0 (the base model's search of the 12 training tasks), then
# the three seeds' loops sharing it, then their summary (summary.json, solved.jsonl, seeds.png in docs/learning_cpu).
# Resumable: re-running skips finished stages.
#   bash docs/learning_cpu/run.sh [outputs/cpu_learning]
set -euo pipefail
OUT=${1:-outputs/cpu_learning}
PY=${PYTHON:-.venv/bin/python}
echo "== $(date +%T) iteration 0"
"$PY" -m soar.loop experiment=cpu_learning iterations=1 heldout.split=null heldout.limit=null \
    hydra.run.dir="$OUT/base"
echo "== $(date +%T) seeds"
"$PY" -m soar.loop -m experiment=cpu_learning base_search="$OUT/base/iter0/search" hydra.sweep.dir="$OUT/seeds"
"$PY" -m soar.report.seeds "$OUT/seeds" --out docs/learning_cpu
echo "== $(date +%T) done"
