"""Refinement phase (REX, spec §4): per task and island, pick a parent from the pool (Thompson sampling on train
accuracy, visits counted), ask the engine to repair it given its actual outputs, and add every child to the pool."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig

from soar.archive import row_outputs
from soar.data import Task
from soar.engines.base import Engine
from soar.prompts import extract_code, refinement_messages
from soar.search.answers import AnswerFormat
from soar.search.pipeline import Evaluator
from soar.search.progress import PhaseProgress
from soar.search.rex import Arm, RefinementPool, accuracy_bin
from soar.search.state import SearchState

Row = Mapping[str, Any]


def child_island(program_id: str) -> int:
    """Refined program ids read "<iteration>/<task>/r<island>-<index>"."""
    return int(program_id.rsplit("/r", 1)[1].split("-")[0])


def build_pools(rows: list[Row], islands: int, n: int, *, use_test: bool, per_bin: int, seed: int,
                task_index: int) -> list[RefinementPool]:
    """Each island's pool: the task's sampled programs binned by accuracy, plus the refined children already in
    the archive (a resumed run), with parents' visit counts restored from their children."""
    samples = [r for r in rows if r["kind"] != "refine"]
    children = [r for r in rows if r["kind"] == "refine"]
    pools = []
    for island in range(islands):
        rng = np.random.default_rng([seed, island, task_index])
        mine = [c for c in children if child_island(c["program_id"]) == island]
        visits = Counter(c["parent_id"] for c in mine)
        arms = [Arm(a.program_id, a.train_acc, a.bin, math.ceil(visits[a.program_id] / n))
                for a in RefinementPool.initial(samples, use_test=use_test, per_bin=per_bin, rng=rng).arms]
        pool = RefinementPool(arms)
        for c in mine:
            pool.add(c["program_id"], c["train_acc"], c["valid"], child_bin(c, use_test))
        pools.append(pool)
    return pools


def child_bin(row: Row, use_test: bool) -> str:
    test = row["correct_test_input"]
    return accuracy_bin(row["train_acc"], bool(test) and all(test) if use_test else None, use_test)


def run_refinement(
    cfg: DictConfig, tasks: dict[str, Task], rows: list[Row], engine: Engine, evaluator: Evaluator,
    state: SearchState, *, use_test: bool,
) -> int:
    """Refine every task with a non-empty pool until its budget or early stop. `rows` = the archive so far.
    Returns the prompts skipped for length."""
    r = cfg.search.refine
    per_island = math.ceil(r.budget / r.islands)
    by_task: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row["task_id"] in tasks:
            by_task[row["task_id"]].append(row)
    known = {row["program_id"]: row for row in rows}
    pools = {t: build_pools(by_task[t], r.islands, r.n, use_test=use_test, per_bin=r.per_bin, seed=cfg.seed,
                            task_index=i) for i, t in enumerate(tasks)}
    done = {(t, k): sum(1 for c in by_task[t] if c["kind"] == "refine" and child_island(c["program_id"]) == k)
            for t in tasks for k in range(r.islands)}
    rngs = {(t, k): np.random.default_rng([cfg.seed, k, i, 1]) for i, t in enumerate(tasks) for k in range(r.islands)}

    def join(kind: str, new_rows: list[dict[str, Any]]) -> None:  # evaluator thread: children become arms
        if kind != "refine":
            return
        with state.lock:
            for c in new_rows:
                known[c["program_id"]] = c
                pools[c["task_id"]][child_island(c["program_id"])].add(
                    c["program_id"], c["train_acc"], c["valid"], child_bin(c, use_test))

    evaluator.listeners.append(join)
    skipped: set[tuple[str, int]] = set()
    total = sum(per_island for t in tasks for pool in pools[t] if len(pool))
    answers = AnswerFormat.of(cfg.search)
    with PhaseProgress("refine", total, sum(done.values()), r.max_tokens, state, len(tasks)) as bar:
        while True:
            active = [(t, k) for t in tasks for k in range(r.islands)
                      if len(pools[t][k]) and done[(t, k)] < per_island and (t, k) not in skipped
                      and state.perfect[(t, "refine")] < r.early_stop]
            prompts, parents = [], []
            for t, k in active:
                with state.lock:
                    parent = known[pools[t][k].select(r.selector, rngs[(t, k)], C=r.C).program_id]
                msgs = refinement_messages(tasks[t], parent["code"], row_outputs(parent), parent["correct_train_input"])
                ids = answers.prompt(engine, msgs)
                if len(ids) + r.max_tokens > engine.max_model_len:
                    skipped.add((t, k))
                    continue
                prompts.append(ids)
                parents.append((t, k, parent["program_id"]))
            if not prompts:
                break
            bar.start_call(len(prompts) * r.n)
            completions = engine.generate(prompts, r.n, r.max_tokens, stop=answers.stop, on_progress=bar.generating)
            programs = []
            for (t, k, parent_id), cs in zip(parents, completions):
                for text in map(answers.text, cs[: per_island - done[(t, k)]]):
                    programs.append({"task_id": t, "program_id": f"{cfg.iteration}/{t}/r{k}-{done[(t, k)]:06d}",
                                     "parent_id": parent_id, "code": extract_code(text), "text": text})
                    done[(t, k)] += 1
            evaluator.submit("refine", programs)
            bar.round_done(len(programs), len(prompts) * r.n)
    return len(skipped)
