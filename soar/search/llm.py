"""model.engine=vllm|hf: sample, then refine, with the configured LLM; generation and execution overlap."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from soar.archive import ProgramArchive
from soar.data import Task
from soar.engines import Sampling, build_engine
from soar.engines.base import Metered, engine_seed
from soar.execution import Executor
from soar.hardware import detect
from soar.runs import ground_truth_allowed
from soar.search.fewshot import FewshotPool
from soar.search.pipeline import Evaluator
from soar.search.refine import run_refinement
from soar.search.sample import run_sampling
from soar.search.state import SearchState
from soar.tracking import Tracker


def refine_model(model: DictConfig, path: str) -> DictConfig:
    """The sampling model's engine settings on the refinement weights (`search.refine.model`)."""
    merged = OmegaConf.merge(model, {"path": str(path), "lora": None})
    assert isinstance(merged, DictConfig)
    return merged


def phase_figures(engine: Metered, before: dict[str, float], programs_s: float) -> dict[str, Any]:
    """What one phase generated since the counters were `before`: tokens per program and per second, seconds per
    program (wall), prompt tokens per completion and the share of them served from the prefix cache."""
    now = engine.counters()
    d = {k: now[k] - before[k] for k in now}
    per = (lambda x: x / d["completions"]) if d["completions"] else (lambda x: None)
    return {
        "programs": int(d["completions"]),
        "tokens": int(d["tokens"]),
        "tokens_per_program": per(d["tokens"]),
        "tokens_per_s": d["tokens"] / d["seconds"] if d["seconds"] else None,
        "gpu_s": d["gpu_seconds"],
        "s_per_program": per(programs_s),
        "prompt_tokens_per_program": per(d["prompt_tokens"]),
        "prefix_cache_hit_rate": d["cached_tokens"] / d["prompt_tokens"] if d["prompt_tokens"] else None,
    }


def run_llm(cfg: DictConfig, split: dict[str, Task], tasks: dict[str, Task], archive: ProgramArchive,
            tracker: Tracker) -> dict[str, Any]:
    """Run both phases into `archive` (resuming from what it holds); returns throughput figures."""
    s, ex = cfg.search, cfg.execution
    use_test = ground_truth_allowed(cfg.data.split) and all(t.test_outputs is not None for t in tasks.values())
    state = SearchState()
    state.update(archive.read(["task_id", "kind", "train_acc", "correct_test_input"]).to_pylist())

    with Executor.from_config(ex) as executor:
        fewshot = FewshotPool.build(Path(to_absolute_path(s.fewshot)),
                                    [Path(to_absolute_path(d)) for d in s.get("fewshot_archives") or []], executor,
                                    exclude=() if ground_truth_allowed(cfg.data.split) else set(split)) \
            if s.use_fewshot else FewshotPool([])
        grows = use_test and s.use_fewshot  # on the training split, solutions found join the pool (spec §2.3)
        if grows:  # a resumed run's own solutions so far, as an uninterrupted run would hold them
            fewshot.add_solved(archive.read(["task_id", "code", "train_acc", "correct_test_input"]).to_pylist(), tasks)
        sampling = Sampling(temperature=s.temperature, min_p=s.min_p,
                            seed=engine_seed(cfg.seed, cfg.iteration, "sample"))
        engine = Metered(build_engine(cfg.model, sampling))
        evaluator = Evaluator(executor, tasks, archive, iteration=cfg.iteration, model=cfg.model.name)

        def on_rows(kind: str, rows: list[dict[str, Any]]) -> None:
            state.update(rows)
            tracker.log({**state.curve_point(), "search/phase": 0 if kind == "sample" else 1})
            if grows:
                fewshot.add_solved(rows, tasks)

        evaluator.listeners.append(on_rows)
        start = time.perf_counter()
        phases = {}
        try:
            skipped = run_sampling(cfg, tasks, engine, evaluator, state, fewshot)
            evaluator.drain()
            sample_s = time.perf_counter() - start
            phases["sample"] = phase_figures(engine, Metered.ZERO, sample_s)
            if s.refine.model is not None and s.refine.budget > 0:  # other weights refine (Table 4)
                refiner = replace(sampling, seed=engine_seed(cfg.seed, cfg.iteration, "refine"))
                engine.swap(lambda: build_engine(refine_model(cfg.model, s.refine.model), refiner))
            before = engine.counters()
            skipped += run_refinement(cfg, tasks, archive.read().to_pylist(), engine, evaluator, state,
                                      use_test=use_test)
            evaluator.drain()
            phases["refine"] = phase_figures(engine, before, time.perf_counter() - start - sample_s)
        finally:
            evaluator.close()
            engine.close()
        wall = time.perf_counter() - start
    return {
        "hardware": str(detect()),
        "dtype": engine.dtype,
        "stop_at_code": bool(s.stop_at_code),
        "answer_prefix": s.get("answer_prefix"),
        "n_prompts_skipped": skipped,
        "n_programs_generated": engine.completions,
        "tokens_generated": engine.tokens,
        "tokens_per_s": engine.tokens / engine.seconds if engine.seconds else None,
        "programs_per_s": engine.completions / wall,
        "generation_s": engine.seconds,
        "gpu_s": engine.gpu_seconds,
        "execution_s": evaluator.busy_s,
        "sample_s": sample_s,
        "wall_s": wall,
        "phases": phases,
    }
