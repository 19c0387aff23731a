"""Refinement phase (REX, spec §4): per task and island, pick a parent from the pool (Thompson sampling on train
accuracy, completions counted), ask the engine to repair it given its actual outputs, and add every child to the pool.

Each round, every active (task, island) picks one parent; all prompts go in one engine call with `n` completions
each, and the round's children are executed and archived as one batch.

Decisions, so that a run is reproducible and a resumed run continues exactly as an uninterrupted one would (same
picks, same pools, same counts):
- A child joins its pool `search.refine.lag` rounds after the round that generated it. lag 1 is SOAR's loop: round
  r's children can be parents in round r + 1, and generation waits for round r's execution. lag 2 executes round r
  while round r + 1 is generated (faster where generation and execution use different hardware), and the children
  join one round later. Never "whenever execution happens to finish", which would depend on machine load.
- Early stop counts the train-perfect children that have joined their pools (all islands of the task).
- Each pick draws from its own rng, seeded by (seed, task id, island, round): no stream carries over rounds.
- The archive is the only state. An island's child number i was generated in round i // n (every pick yields n
  children, the last one fewer when cut to the budget), and a resumed run starts at the first round missing from
  the archive. An island with fewer picks than rounds had stopped (early stop, or a prompt too long for the context)
  and stays stopped. Every arm's N is its number of children in the archive (`RefinementPool.visit`).
- `search.refine.count_visits: false` is SOAR's code, where N stays 0 (plain Thompson sampling on h, spec §4.2);
  true (default) is the paper's Fig. 11.
"""
from __future__ import annotations

import itertools
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig

from soar.archive import row_outputs
from soar.data import Task
from soar.engines.base import Engine
from soar.prompts import extract_code, refinement_messages
from soar.scoring.bins import row_bin
from soar.search.answers import AnswerFormat
from soar.search.cost import token_columns
from soar.search.pipeline import Evaluator
from soar.search.progress import PhaseProgress
from soar.search.rex import RefinementPool, initial_pools
from soar.search.state import SearchState

Row = Mapping[str, Any]


def child_island(program_id: str) -> int:
    """Refined program ids read "<iteration>/<task>/r<island>-<index>"."""
    return int(program_id.rsplit("/r", 1)[1].split("-")[0])


def child_index(program_id: str) -> int:
    return int(program_id.rsplit("-", 1)[1])


def task_seed(task_id: str) -> int:
    """A stable number for a task id: the seeds do not depend on which other tasks are searched."""
    return zlib.crc32(task_id.encode())


class Island:
    """One REX instance of one task: its pool, the rows of its arms, and its children in generation order."""

    def __init__(self, pool: RefinementPool, rows: dict[str, Row], children: list[Row]) -> None:
        self.pool, self.rows = pool, rows
        self.children = children  # evaluated children by index; the evaluator thread appends
        self.done = len(children)  # children generated, evaluated or not
        self.joined = 0  # children[:joined] are arms
        self.perfect = 0  # arms among the children that are perfect on train

    def join(self, count: int, use_test: bool) -> None:
        """Make the first `count` children arms (if not yet)."""
        if count > len(self.children):
            raise RuntimeError(f"child {count - 1} should be evaluated by now; {len(self.children)} are")
        for c in self.children[self.joined:count]:
            self.pool.add(c["program_id"], c["train_acc"], row_bin(c, use_test))
            self.rows[c["program_id"]] = c
            self.perfect += c["train_acc"] == 1.0
        self.joined = max(self.joined, count)


def check_refine(r: DictConfig) -> None:
    """The settings only this phase reads (`search.refine.*`), with an error naming the key."""
    if not isinstance(r.lag, int) or isinstance(r.lag, bool) or r.lag < 1:
        raise ValueError(f"search.refine.lag={r.lag!r}: must be an integer >= 1")
    if not isinstance(r.count_visits, bool):
        raise ValueError(f"search.refine.count_visits={r.count_visits!r}: must be true or false")


def joined_by(round_: int, r: DictConfig) -> int:
    """How many of an island's children are arms when round `round_` picks: those of rounds <= round_ - lag."""
    return max(0, round_ - r.lag + 1) * r.n


def build_islands(rows: list[Row], task: Task, r: DictConfig, *, start: int, use_test: bool,
                  seed: int) -> list[Island]:
    """The task's islands as round `start` finds them: the starting pools, the refined children already archived
    (a resumed run; those of rounds <= start - lag joined), and every arm's N restored from its children."""
    samples = [x for x in rows if x["kind"] != "refine"]
    key = task_seed(task.id)
    pools = initial_pools(samples, task, use_test=use_test, per_bin=r.per_bin,
                          rngs=[np.random.default_rng([seed, key, k, 0, 0]) for k in range(r.islands)])
    by_id = {x["program_id"]: x for x in samples}
    islands = []
    for k, pool in enumerate(pools):
        mine = sorted((x for x in rows if x["kind"] == "refine" and child_island(x["program_id"]) == k),
                      key=lambda x: child_index(x["program_id"]))
        island = Island(pool, {a.program_id: by_id[a.program_id] for a in pool.arms}, mine)
        island.join(min(joined_by(start, r), island.done), use_test)
        for parent, count in Counter(x["parent_id"] for x in mine).items():
            if parent not in pool:
                raise ValueError(f"resume: parent {parent!r} of island {k} of task {task.id} is not in its pool; "
                                 f"the archive was made with other search.refine settings (n, islands, lag, per_bin)")
            pool.visit(parent, count if r.count_visits else 0)
        islands.append(island)
    return islands


def run_refinement(
    cfg: DictConfig, tasks: dict[str, Task], rows: list[Row], engine: Engine, evaluator: Evaluator,
    state: SearchState, *, use_test: bool,
) -> int:
    """Refine every task with a non-empty pool until its budget or early stop, resuming from `rows` (the archive so
    far); `state.pools` shows the pools. Returns the prompts skipped for length."""
    r = cfg.search.refine
    check_refine(r)
    per_island = math.ceil(r.budget / r.islands)
    by_task: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row["task_id"] in tasks:
            by_task[row["task_id"]].append(row)
    start = max((child_index(x["program_id"]) // r.n + 1 for t in tasks for x in by_task[t] if x["kind"] == "refine"),
                default=0)
    islands = {(t, k): island for t in tasks for k, island in
               enumerate(build_islands(by_task[t], tasks[t], r, start=start, use_test=use_test, seed=cfg.seed))}
    state.pools = {key: island.pool for key, island in islands.items()}

    def arrive(kind: str, new_rows: list[dict[str, Any]]) -> None:  # evaluator thread
        if kind == "refine":
            with state.lock:
                for c in new_rows:
                    islands[(c["task_id"], child_island(c["program_id"]))].children.append(c)

    evaluator.listeners.append(arrive)
    skipped: set[tuple[str, int]] = set()
    total = sum(per_island for island in islands.values() if len(island.pool))
    answers = AnswerFormat.of(cfg.search)
    with PhaseProgress("refine", total, sum(i.done for i in islands.values()), r.max_tokens, state, len(tasks)) as bar:
        for round_ in itertools.count(start):
            evaluator.drain(keep=r.lag - 1)  # the children of rounds <= round_ - lag are archived
            perfect: Counter[str] = Counter()
            with state.lock:
                for (t, _), island in islands.items():
                    island.join(min(joined_by(round_, r), island.done), use_test)
                    perfect[t] += island.perfect
            prompts, parents = [], []
            for (t, k), island in islands.items():
                if not (len(island.pool) and island.done == round_ * r.n < per_island and perfect[t] < r.early_stop):
                    continue
                rng = np.random.default_rng([cfg.seed, task_seed(t), k, 1, round_])
                parent = island.rows[island.pool.select(r.selector, rng, C=r.C).program_id]
                msgs = refinement_messages(tasks[t], parent["code"], row_outputs(parent), parent["correct_train_input"])
                ids = answers.prompt(engine, msgs)
                if len(ids) + r.max_tokens > engine.max_model_len:
                    skipped.add((t, k))
                    continue
                if r.count_visits:
                    island.pool.visit(parent["program_id"], min(r.n, per_island - island.done))
                prompts.append(ids)
                parents.append((t, k, parent["program_id"]))
            if not prompts:
                break
            bar.start_call(len(prompts) * r.n)
            completions = engine.generate(prompts, r.n, r.max_tokens, stop=answers.stop, on_progress=bar.generating)
            programs = []
            for (t, k, parent_id), cs in zip(parents, completions):
                island = islands[(t, k)]
                if len(cs) != r.n:
                    raise RuntimeError(f"the engine returned {len(cs)} completions for a prompt, not n={r.n}")
                for c in cs[: per_island - island.done]:
                    text = answers.text(c)
                    programs.append({"task_id": t, "program_id": f"{cfg.iteration}/{t}/r{k}-{island.done:06d}",
                                     "parent_id": parent_id, "code": extract_code(text), "text": text,
                                     **token_columns(c)})
                    island.done += 1
            evaluator.submit("refine", programs)
            bar.round_done(len(programs), len(prompts) * r.n)
    return len(skipped)
