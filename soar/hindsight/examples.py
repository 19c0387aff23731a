"""Fine-tuning examples from the program archive (spec §7-§10): filter, select, relabel, render prompts.

    examples, stats = build_examples(archive_table, tasks, cfg.finetune.data, seed=0, vote_c=cfg.scoring.c)

cfg keys (Mapping or DictConfig): `use_test` (required: True only on a training split, where the ground-truth test
outputs may be used; False for evaluation splits / test-time training, where neither the rows'
`correct_test_input` nor the tasks' test outputs are ever read: that column is not even loaded and the tasks'
test outputs are blanked first), `mode` (sample|refine|both, default both), `sample_selection` (default
greedy_diverse), `refine_selection` (default diverse), `per_task` (50), `refine_per_task` (50), `dedup_code`
(False | exact | normalised; true = exact), `shuffle_pairs` (True), `refine_relabel` (False: the paper's rule).

Pipeline per task (tasks sorted by id; rows of tasks missing from `tasks` are skipped and counted):
1. every row goes through `keep_program` (spec §7.2); the verdicts are counted per filter;
2. sampling data: the kept rows (code-deduplicated first with `dedup_code`: exact code, or near-duplicates by
   soar.hindsight.near_duplicates, the shortest code of each group kept) are selected with `sample_selection`;
   each becomes the no-few-shot sampling prompt of the relabelled task (the original task for `correct`, which is
   its own relabelling) with no test outputs shown (the paper's formulation, spec §7.1), response = its code;
3. refinement data: kept rows of kind "refine" that are fully correct (train + test with use_test, train-perfect
   without) are paired with their TRUE parent (parent_id) and selected with `refine_selection`; prompt =
   `refinement_messages` of the original task with the parent's code, outputs and train flags (exactly what the
   refiner saw), response = the child's code.
   With `refine_relabel` (soar's extension, not the paper's) EVERY kept child is used: it is a correct refinement
   of the task relabelled with its own outputs (train and test; hindsight relabelling applied to refinement), and
   the prompt shows the parent's outputs with train flags against those outputs. The parent's bin is taken on
   the relabelled task, test included (its test outputs are the child's, known whatever `use_test` says), so a
   parent that already gives all the child's outputs ("max") is dropped and counted in `refine.same_outputs`.
   A fully correct child relabels to its own task: the paper's examples are a subset of these;
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
from soar.hindsight.relabel import dedup_by_code, output_key, relabel
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
DEDUP_CODE = ("exact", "normalised")
_COLUMNS = ("program_id", "task_id", "parent_id", "kind", "iteration", "model", "code", "error",
            "predicted_train_output", "predicted_test_output", "correct_train_input")
HINDSIGHT_COLUMNS = (*_COLUMNS, "correct_test_input")  # what build_examples reads of an archive
_DEFAULTS: dict[str, Any] = {"mode": "both", "sample_selection": "greedy_diverse", "refine_selection": "diverse",
                             "per_task": 50, "refine_per_task": 50, "dedup_code": False, "shuffle_pairs": True,
                             "refine_relabel": False}
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


def refine_example(task: Task, child: Row, parent: Row, *, relabelled: bool = False,
                   rng: np.random.Generator | None = None) -> Example:
    """A refinement example: the refinement prompt of `task` with the parent's code, outputs and train flags (pairs
    permuted consistently when `rng` is given); the response is the child's code. With `relabelled` the task is
    the one relabelled with the child's outputs and the parent's flags say where it already gives them."""
    outputs = row_outputs(parent)
    if relabelled:
        task = relabel(task, child)
        flags = _same_outputs(parent, child)[:len(task.train)]
    else:
        flags = [bool(f) for f in parent["correct_train_input"]]
    shown, pt, ps = _permute(task, rng)
    n_train = len(task.train)
    outs = [outputs[i] for i in pt] + [outputs[n_train + j] for j in ps]
    messages = refinement_messages(shown, parent["code"] or "", outs, [flags[i] for i in pt])
    return Example(messages, fence(child["code"] or ""), task.id, "refine", str(child["program_id"]))


def _same_outputs(parent: Row, child: Row) -> list[bool]:
    """Per input (train then test), whether the parent's output equals the child's (a failed output never does)."""
    return [p is not None and p == c for p, c in zip(output_key(parent), output_key(child))]


def _relabelled_bin(parent: Row, child: Row, n_train: int) -> str:
    """The parent's accuracy bin on the task relabelled with the child's outputs, test included."""
    same = _same_outputs(parent, child)
    return accuracy_bin(sum(same[:n_train]) / n_train if n_train else 0.0, all(same[n_train:]), True)


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
    dedup = "exact" if c["dedup_code"] is True else c["dedup_code"] or False
    if dedup is not False and dedup not in DEDUP_CODE:
        raise ValueError(f"{prefix}dedup_code={c['dedup_code']!r}: allowed: false, {', '.join(DEDUP_CODE)} "
                         "(true = exact)")
    c["dedup_code"] = dedup
    for key in ("shuffle_pairs", "refine_relabel"):
        c[key] = bool(c[key])
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
        "same_outputs": 0, "code_duplicates": 0,
        "available_by_bin": {b: 0 for b in BINS}, "selected_by_bin": {b: 0 for b in BINS}}
    sample_stats = {"code_duplicates": 0, "greedy": 0, "diverse": 0}
    samples: list[Example] = []
    refines: list[Example] = []
    per_task: dict[str, list[int]] = {"sample": [], "refine": []}
    want_sample, want_refine = mode in ("sample", "both"), mode in ("refine", "both")
    relabel_refine = c["refine_relabel"]
    refine_use_test = use_test or relabel_refine  # relabelled tasks know their test outputs (the child's)
    bins_ok = PARENT_BINS[refine_use_test]

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
            pool = dedup_by_code(kept, c["dedup_code"] == "normalised") if c["dedup_code"] else kept
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
            correct = [r for r in children if fully_correct(r, task, use_test)]
            refine_stats["correct_children"] += len(correct)
            if not relabel_refine:
                children = correct
            if c["dedup_code"]:
                n_children = len(children)
                children = dedup_by_code(children, c["dedup_code"] == "normalised")
                refine_stats["code_duplicates"] += n_children - len(children)
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
                if relabel_refine:
                    b = _relabelled_bin(parent, child, len(task.train))
                else:
                    ptest = all(test_flags(parent, task)) if use_test else None
                    b = accuracy_bin(train_accuracy(parent), ptest, use_test)
                if relabel_refine and b == "max":
                    refine_stats["same_outputs"] += 1
                    continue
                if b not in bins_ok:
                    refine_stats["excluded_parent_bin"] += 1
                    continue
                refine_stats["available_by_bin"][b] += 1
                triples.append((child, parent, b))
            chosen_t = select_refinement(triples, c["refine_selection"], c["refine_per_task"], refine_use_test, rng)
            shuffle = rng if c["shuffle_pairs"] else None
            for child, parent, b in chosen_t:
                refine_stats["selected_by_bin"][b] += 1
                refines.append(refine_example(task, child, parent, relabelled=relabel_refine, rng=shuffle))
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
