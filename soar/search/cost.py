"""What a search cost, per task and in total: tokens, GPU-seconds, executor CPU-seconds and dollars.

Per program the archive keeps `prompt_tokens` and `gen_tokens` (exact, from the engine) and `exec_cpu_s` (the
executor CPU time of the program's batch, shared among its programs by the inputs each ran on: soar.search.evaluate).
Engine time becomes GPU-seconds: each generate call's seconds times the engine's GPUs (0 on a CPU machine), added
up over phases and shards (`gpu_s` in the throughput figures). A task's share of the GPU-seconds is its share of
the generated tokens: continuous batching runs many tasks in one engine step, so time cannot be told apart more
finely. Dollars = GPU-hours x `cost.gpu_hour_usd` (the executor's CPUs are not priced). A replay generates
nothing and costs only CPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from soar.engines.base import Completion

COLUMNS = ("task_id", "prompt_tokens", "gen_tokens", "exec_cpu_s")
DEFAULT_GPU_HOUR_USD = 2.0


def token_columns(completion: Completion) -> dict[str, int]:
    """The archive columns of a generated program's tokens."""
    return {"prompt_tokens": completion.prompt_tokens, "gen_tokens": completion.n_tokens}


def task_costs(table: pa.Table, gpu_s: float, gpu_hour_usd: float) -> dict[str, dict[str, float]]:
    """Per task: prompt_tokens, gen_tokens, gpu_s (its share of `gpu_s` by generated tokens), exec_cpu_s, usd.
    Columns an archive lacks (written before they existed, or a replay's) count as 0."""
    present = [c for c in COLUMNS[1:] if c in table.column_names]
    grouped = table.select(["task_id", *present]).group_by("task_id").aggregate([(c, "sum") for c in present])
    sums: dict[str, dict[str, float]] = {}
    for row in grouped.to_pylist():  # one row per task
        sums[row["task_id"]] = {c: row.get(f"{c}_sum") or 0 for c in COLUMNS[1:]}
    tokens = sum(s["gen_tokens"] for s in sums.values())
    out = {}
    for tid, s in sums.items():
        share = gpu_s * s["gen_tokens"] / tokens if tokens else 0.0
        out[tid] = {"prompt_tokens": int(s["prompt_tokens"]), "gen_tokens": int(s["gen_tokens"]), "gpu_s": share,
                    "exec_cpu_s": s["exec_cpu_s"], "usd": share / 3600 * gpu_hour_usd}
    return out


def cost_summary(per_task: Mapping[str, Mapping[str, float]], gpu_hour_usd: float, n_solved: float
                 ) -> dict[str, Any]:
    """The run's totals, the price used, and dollars per task and per solved task (`n_solved`: vote pass@2 summed
    over tasks)."""
    total = {k: sum(c[k] for c in per_task.values()) for k in ("prompt_tokens", "gen_tokens", "gpu_s", "exec_cpu_s",
                                                                "usd")}
    n = len(per_task)
    return {**total, "gpu_hour_usd": gpu_hour_usd, "usd_per_task": total["usd"] / n if n else None,
            "usd_per_solved_task": total["usd"] / n_solved if n_solved else None}
