"""Cost per task (soar.search.cost): tokens from the archive, GPU-seconds shared by generated tokens, executor
CPU-seconds measured per batch and shared by inputs run, dollars from the price of a GPU-hour."""
from __future__ import annotations

import time

import pyarrow as pa
import pytest

from soar.data import load_split
from soar.engines.base import Metered
from soar.execution import Executor
from soar.search.cost import cost_summary, task_costs
from soar.search.evaluate import evaluate

SPLIT = load_split("arc_agi_1", "training")


def test_a_tasks_cost_is_its_share_of_tokens_gpu_time_and_cpu() -> None:
    table = pa.table({"task_id": ["a", "a", "b", "c"], "prompt_tokens": [100, 100, 300, None],
                      "gen_tokens": [30, 10, 60, None], "exec_cpu_s": [0.5, 0.25, 1.0, 2.0]})
    costs = task_costs(table, gpu_s=3600.0, gpu_hour_usd=3.0)
    assert costs["a"] == {"prompt_tokens": 200, "gen_tokens": 40, "gpu_s": 1440.0, "exec_cpu_s": 0.75,
                          "usd": pytest.approx(1.2)}
    assert costs["b"]["gpu_s"] == 2160.0 and costs["b"]["usd"] == pytest.approx(1.8)
    assert costs["c"] == {"prompt_tokens": 0, "gen_tokens": 0, "gpu_s": 0.0, "exec_cpu_s": 2.0, "usd": 0.0}
    summary = cost_summary(costs, 3.0, n_solved=2)
    assert summary["usd"] == pytest.approx(3.0) and summary["gen_tokens"] == 100 and summary["gpu_s"] == 3600.0
    assert summary["usd_per_task"] == pytest.approx(1.0) and summary["usd_per_solved_task"] == pytest.approx(1.5)
    assert cost_summary(costs, 3.0, n_solved=0)["usd_per_solved_task"] is None
    replay = task_costs(pa.table({"task_id": ["a"], "code": ["..."]}), gpu_s=0.0, gpu_hour_usd=3.0)  # no columns
    assert replay == {"a": {"prompt_tokens": 0, "gen_tokens": 0, "gpu_s": 0.0, "exec_cpu_s": 0.0, "usd": 0.0}}


def test_gpu_seconds_are_engine_seconds_times_its_gpus() -> None:
    class TwoGPUs:
        name, max_model_len, dtype, gpus = "fake", 100, "bfloat16", 2

        def generate(self, prompts, n, max_tokens, *, stop=None, on_progress=None):
            time.sleep(0.05)
            return [[] for _ in prompts]

        def close(self) -> None:
            pass

    engine = Metered(TwoGPUs())
    engine.generate([[1]], 1, 1)
    assert engine.gpus == 2 and engine.gpu_seconds == pytest.approx(2 * engine.seconds) and engine.seconds >= 0.05


def test_a_batchs_executor_cpu_is_shared_among_its_programs_by_inputs() -> None:
    tasks = {t: SPLIT[t] for t in ("6150a2bd", "d631b094")}
    busy = ("import time\ndef transform(grid):\n    end = time.process_time() + 0.1\n"
            "    while time.process_time() < end:\n        pass\n    return grid\n")
    programs = [{"task_id": t, "program_id": f"{t}/{i}", "code": busy + f"# {i}\n"} for t in tasks for i in range(2)]
    with Executor(workers=1) as executor:
        before = executor.cpu_seconds()
        rows = evaluate(executor, tasks, programs, kind="sample", iteration=0, model="m")
        measured = executor.cpu_seconds() - before
    assert sum(r["exec_cpu_s"] for r in rows) == pytest.approx(measured)
    n_inputs = {t: len(task.inputs) for t, task in tasks.items()}
    per_input = {r["exec_cpu_s"] / n_inputs[r["task_id"]] for r in rows}
    assert max(per_input) == pytest.approx(min(per_input)) and measured > 0.08 * sum(n_inputs.values()) * 2  # 0.1 s per input, 2 programs
