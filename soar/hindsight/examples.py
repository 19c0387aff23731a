"""Fine-tuning examples from the program archive (spec §7-§10): filter, select, relabel, render prompts.

    examples, stats = build_examples(archive_table, tasks, cfg.finetune.data, seed=0, vote_c=cfg.scoring.c)

cfg keys (Mapping or DictConfig): `use_test` (required: True only on a training split, where the ground-truth test
outputs may be used; False for evaluation splits / test-time training, where neither the rows'
`correct_test_input` nor the tasks' test outputs are ever read: that column is not even loaded and the tasks'
test outputs are blanked first), `mode` (sample|refine|both, default both), `sample_selection` (default
greedy_diverse), `refine_selection` (default diverse), `per_task` (50), `refine_per_task` (50), `dedup_code`
(False), `shuffle_pairs` (True).

Pipeline per task (tasks sorted by id; rows of tasks missing from `tasks` are skipped and counted):
1. every row goes through `keep_program` (spec §7.2); the verdicts are counted per filter;
2. sampling data: the kept rows (code-deduplicated first with `dedup_code`) are selected with `sample_selection`;
   each becomes the no-few-shot sampling prompt of the relabelled task (the original task for `correct`, which is
   its own relabelling) with no test outputs shown (the paper's formulation, spec §7.1), response = its code;
3. refinement data: kept rows of kind "refine" that are fully correct (train + test with use_test, train-perfect
   without) are paired with their TRUE parent (parent_id) and selected with `refine_selection`; prompt =
   `refinement_messages` of the original task with the parent's code, outputs and train flags (exactly what the
   refiner saw), response = the child's code;
4. with `shuffle_pairs`, the train pairs and the test pairs of each example are permuted (per example, seeded),
   consistently with the parent's per-pair results for refinement (spec D.4 augmentation).

Identity: an archive may pool several runs/iterations/models, so program ids may repeat. A row is its own
identity (its position). A child's parent is looked up among the same task's rows (filtered out or not: the parent
is shown as the refiner saw it, errors included) with program_id == parent_id, preferring the same (model,
iteration), then the same iteration, then the same model; if several rows still match, the first in archive order
is used and the child is counted in `refine.ambiguous_parent`. Children without a parent row are dropped and
counted in `refine.missing_parent`.

Randomness: one generator per (seed, task id, data kind), so a task's draws do not depend on the other tasks.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

import numpy as np
import pyarrow as pa

from soar.archive import TaskRows, row_outputs
from soar.data.task import Pair, Task
from soar.hindsight.relabel import dedup_by_code, relabel
from soar.hindsight.select import (
    REFINE_SELECTIONS,
    SAMPLE_SELECTIONS,
    fully_correct,
    greedy_diverse,
    select_refinement,
    select_sampling,
    test_flags,
    train_accuracy,
)
from soar.prompts import fence, refinement_messages, sampling_messages
from soar.scoring.bins import BINS, PARENT_BINS, accuracy_bin
from soar.scoring.filters import FILTERS, keep_rows
from soar.scoring.vote import DEFAULT_C

MODES = ("sample", "refine", "both")
_COLUMNS = ("program_id", "task_id", "parent_id", "kind", "iteration", "model", "code", "error",
            "predicted_train_output", "predicted_test_output", "correct_train_input")
HINDSIGHT_COLUMNS = (*_COLUMNS, "correct_test_input")  # what build_examples reads of an archive
_DEFAULTS: dict[str, Any] = {"mode": "both", "sample_selection": "greedy_diverse", "refine_selection": "diverse",
                             "per_task": 50, "refine_per_task": 50, "dedup_code": False, "shuffle_pairs": True}
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]]  # system + user: the prompt, exactly as at inference
    response: str  # the training target: the code in the prompts' fence (soar.prompts.fence)
    task_id: str  # the original task id
    kind: str  # "sample" | "refine"
    program_id: str  # the program it comes from (the child for "refine")


def _rng(seed: int, task_id: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(task_id.encode()), stream])


def _permute(task: Task, rng: np.random.Generator | None) -> tuple[Task, list[int], list[int]]:
    """The task with its train and test pairs permuted (identity without rng), and the two permutations."""
    pt, ps = list(range(len(task.train))), list(range(len(task.test)))
    if rng is not None:
        pt, ps = rng.permutation(len(task.train)).tolist(), rng.permutation(len(task.test)).tolist()
    return Task(task.id, tuple(task.train[i] for i in pt), tuple(task.test[j] for j in ps)), pt, ps


def sample_example(task: Task, row: Row, *, relabelled: bool = True,
                   rng: np.random.Generator | None = None) -> Example:
    """A sampling example: the no-few-shot sampling prompt of the relabelled task (or of `task` itself with
    relabelled=False), pairs permuted when `rng` is given; the response is the row's code."""
    target = relabel(task, row) if relabelled else task
    shown, _, _ = _permute(target, rng)
    return Example(sampling_messages(shown), fence(row["code"] or ""), task.id, "sample", str(row["program_id"]))


def refine_example(task: Task, child: Row, parent: Row, rng: np.random.Generator | None = None) -> Example:
    """A refinement example: the refinement prompt of `task` with the parent's code, outputs and train flags (pairs
    permuted consistently when `rng` is given); the response is the child's code."""
    outputs = row_outputs(parent)
    flags = [bool(f) for f in parent["correct_train_input"]]
    shown, pt, ps = _permute(task, rng)
    n_train = len(task.train)
    outs = [outputs[i] for i in pt] + [outputs[n_train + j] for j in ps]
    messages = refinement_messages(shown, parent["code"] or "", outs, [flags[i] for i in pt])
    return Example(messages, fence(child["code"] or ""), task.id, "refine", str(child["program_id"]))


def _hide_test(task: Task) -> Task:
    return Task(task.id, task.train, tuple(Pair(p.input, None) for p in task.test))


def data_options(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The data build's options (finetune.data) with defaults filled in; a bad value is an error naming
    `prefix + key`. `use_test` is left to `build_examples` (the train job resolves its `auto` per archive first)."""
    c = {k: cfg.get(k, d) for k, d in _DEFAULTS.items()}
    for key, allowed in (("mode", MODES), ("sample_selection", SAMPLE_SELECTIONS),
                         ("refine_selection", REFINE_SELECTIONS)):
        if c[key] not in allowed:
            raise ValueError(f"{prefix}{key}={c[key]!r}: allowed: {', '.join(allowed)}")
    for key in ("per_task", "refine_per_task"):
        if isinstance(c[key], bool) or not isinstance(c[key], int | float) or int(c[key]) != c[key] or c[key] < 0:
            raise ValueError(f"{prefix}{key}={c[key]!r}: must be an integer >= 0")
        c[key] = int(c[key])
    c["dedup_code"], c["shuffle_pairs"] = bool(c["dedup_code"]), bool(c["shuffle_pairs"])
    return c


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "mean": float(mean(values)), "max": max(values)}


def find_parent(child: Row, candidates: Sequence[Row]) -> tuple[Row | None, bool]:
    """The child's parent among `candidates` (rows of its task with program_id == parent_id) and whether the
    choice was ambiguous; see the module doc."""
    if not candidates:
        return None, False
    for same in (lambda r: r["model"] == child["model"] and r["iteration"] == child["iteration"],
                 lambda r: r["iteration"] == child["iteration"],
                 lambda r: r["model"] == child["model"]):
        matches = [r for r in candidates if same(r)]
        if matches:
            return matches[0], len(matches) > 1
    return candidates[0], len(candidates) > 1


def build_examples(archive: pa.Table, tasks: Mapping[str, Task], cfg: Mapping[str, Any], seed: int = 0,
                   vote_c: float = DEFAULT_C) -> tuple[list[Example], dict[str, Any]]:
    """Fine-tuning examples from an archive table and statistics for logging; see the module doc. `vote_c` is the
    vote constant of greedy_diverse_mv (`scoring.c`, as in the search's vote)."""
    if not isinstance(cfg.get("use_test"), bool):
        raise ValueError(f"finetune data config needs `use_test` true or false, not {cfg.get('use_test')!r} (true only "
                         "where ground-truth test outputs may be used)")
    c = {**data_options(cfg), "use_test": cfg["use_test"]}
    use_test, mode = c["use_test"], c["mode"]
    columns = list(_COLUMNS) + (["correct_test_input"] if use_test else [])
    missing = [col for col in columns if col not in archive.column_names and col not in ("error", "correct_test_input")]
    if missing:
        raise ValueError(f"archive lacks column(s) {missing}")
    by_task = TaskRows(archive.select([col for col in columns if col in archive.column_names]), tasks)
    unknown = archive.num_rows - by_task.num_rows
    if not use_test:
        tasks = {tid: _hide_test(t) for tid, t in tasks.items()}

    dropped = {f: 0 for f in FILTERS}
    kept_total = 0
    refine_stats: dict[str, Any] = {
        "children": 0, "correct_children": 0, "missing_parent": 0, "ambiguous_parent": 0, "excluded_parent_bin": 0,
        "available_by_bin": {b: 0 for b in BINS}, "selected_by_bin": {b: 0 for b in BINS}}
    sample_stats = {"code_duplicates": 0, "greedy": 0, "diverse": 0}
    samples: list[Example] = []
    refines: list[Example] = []
    per_task: dict[str, list[int]] = {"sample": [], "refine": []}
    want_sample, want_refine = mode in ("sample", "both"), mode in ("refine", "both")
    bins_ok = PARENT_BINS[use_test]

    for tid in by_task:
        task, task_rows = tasks[tid], by_task[tid]
        kept = []
        for r, verdict in zip(task_rows, keep_rows(task, task_rows)):
            if verdict is None:
                kept.append(r)
            else:
                dropped[verdict] += 1
        kept_total += len(kept)

        if want_sample:
            rng = _rng(seed, tid, 0)
            pool = dedup_by_code(kept) if c["dedup_code"] else kept
            sample_stats["code_duplicates"] += len(kept) - len(pool)
            method, n = c["sample_selection"], c["per_task"]
            if method in ("greedy_diverse", "greedy_diverse_mv"):
                g, d = greedy_diverse(pool, task, n, use_test, rng, majority_vote=method == "greedy_diverse_mv",
                                      c=vote_c)
                chosen = g + d
                sample_stats["greedy"] += len(g)
                sample_stats["diverse"] += len(d)
            else:
                chosen = select_sampling(pool, task, method, n, use_test, rng)
            shuffle = rng if c["shuffle_pairs"] else None
            new = [sample_example(task, r, relabelled=method != "correct", rng=shuffle) for r in chosen]
            samples += new
            per_task["sample"].append(len(new))

        if want_refine:
            rng = _rng(seed, tid, 1)
            children: list[Row] = [r for r in kept if r["kind"] == "refine"]
            refine_stats["children"] += len(children)
            children = [r for r in children if fully_correct(r, task, use_test)]
            refine_stats["correct_children"] += len(children)
            if c["dedup_code"]:
                children = dedup_by_code(children)
            ids: dict[str, list[dict[str, Any]]] = {}
            for r in task_rows:
                ids.setdefault(str(r["program_id"]), []).append(r)
            triples = []
            for child in children:
                pid = child["parent_id"]
                parent, ambiguous = find_parent(child, [] if pid is None else ids.get(str(pid), []))
                if parent is None:
                    refine_stats["missing_parent"] += 1
                    continue
                refine_stats["ambiguous_parent"] += ambiguous
                ptest = all(test_flags(parent, task)) if use_test else None
                b = accuracy_bin(train_accuracy(parent), ptest, use_test)
                if b not in bins_ok:
                    refine_stats["excluded_parent_bin"] += 1
                    continue
                refine_stats["available_by_bin"][b] += 1
                triples.append((child, parent, b))
            chosen_t = select_refinement(triples, c["refine_selection"], c["refine_per_task"], use_test, rng)
            shuffle = rng if c["shuffle_pairs"] else None
            for child, parent, b in chosen_t:
                refine_stats["selected_by_bin"][b] += 1
                refines.append(refine_example(task, child, parent, rng=shuffle))
            per_task["refine"].append(len(chosen_t))

    examples = samples + refines
    stats: dict[str, Any] = {
        "config": dict(c),
        "rows": archive.num_rows,
        "rows_unknown_task": unknown,
        "tasks": len(by_task),
        "filters": {"programs": by_task.num_rows, "kept": kept_total, "dropped": dropped},
        "examples": {"sample": len(samples), "refine": len(refines), "total": len(examples)},
        "per_task": {k: _spread(v) for k, v in per_task.items()},
        "sample": sample_stats,
        "refine": refine_stats,
        "response_chars": {k: _spread([len(e.response) for e in exs])
                           for k, exs in (("sample", samples), ("refine", refines), ("all", examples))},
    }
    return examples, stats
