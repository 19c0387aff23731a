#!/usr/bin/env bash
# Every paper experiment on 2 CPU cores with the embedded SmolLM2-135M (preset=cpu), as measured for the README's
# "Every experiment on 2 CPU cores" table (printed at the end by table.py). Resumable: re-running skips finished
# stages.
#   bash docs/experiments_cpu/run.sh [outputs/cpu]
set -euo pipefail
OUT=${1:-outputs/cpu}
PY=${PYTHON:-.venv/bin/python}
loop() { echo "== $(date +%T) soar.loop $*"; "$PY" -m soar.loop "$@"; }

# iteration 0 shared by the arms that sample and refine with the base model (Tables 3, 4, 5, Fig. 2), with 32
# refinements per task: at the preset's 8, all 19 refined children reproduced their parent's outputs and the
# refinement-data arms had nothing to train on, even relabelled (32: 57 children, 8 examples)
loop experiment=table3_refine_data preset=cpu iterations=1 search.refine.budget=32 \
    hydra.run.dir="$OUT/base_sample_refine"
BASE="$OUT/base_sample_refine/iter0/search"
loop -m experiment=table3_refine_data preset=cpu base_search="$BASE" hydra.sweep.dir="$OUT/table3"
loop -m experiment=table4_sample_refine_models preset=cpu base_search="$BASE" hydra.sweep.dir="$OUT/table4"
loop experiment=fig2_iterations preset=cpu base_search="$BASE" hydra.run.dir="$OUT/fig2"
loop experiment=table5_all_train preset=cpu base_search="$BASE" hydra.run.dir="$OUT/table5"
# Table 2 samples only (Sample-3k): its own iteration 0
loop experiment=table2_sampling_data preset=cpu iterations=1 hydra.run.dir="$OUT/base_sample"
# (the `correct` arm stops with "hindsight built no example" when iteration 0 solves no task: the others still run)
loop -m experiment=table2_sampling_data preset=cpu base_search="$OUT/base_sample/iter0/search" \
    hydra.sweep.dir="$OUT/table2" || echo "== table2: an arm stopped (above)"
# test-time training on the evaluation split
loop experiment=ttt preset=cpu hydra.run.dir="$OUT/ttt"
echo "== $(date +%T) done"
"$PY" docs/experiments_cpu/table.py "$OUT"    # the README table
