"""Finetuning examples (spec §9.2, soar.hindsight.examples): sampling and refinement examples built from archives
(real programs and hand-made lineages), modes and config checks, determinism, shuffled pairs, and test-time
data that reads no ground truth."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hindsight_rows import (
    CRASH,
    FLIP_H,
    FLIP_V,
    IDENT,
    ROT,
    ROT_LONG,
    SPLIT,
    TRANSPOSE,
    ZERO,
    archive_rows,
    executed_rows,
    mv_rows,
    synth_row,
    synth_task,
)

from soar.archive import ProgramArchive, row_outputs
from soar.archive.archive import rows_to_table
from soar.data import Pair, Task
from soar.hindsight.examples import (
    MODES,
    Example,
    build_examples,
    refine_example,
    sample_example,
)
from soar.hindsight.relabel import relabel
from soar.hindsight.select import (
    REFINE_SELECTIONS,
    SAMPLE_SELECTIONS,
)
from soar.prompts import format_grid, refinement_messages, sampling_messages


def cfg(**kw):
    return {"use_test": True, "mode": "sample", "sample_selection": "greedy_diverse", "refine_selection": "diverse",
            "per_task": 50, "refine_per_task": 50, "dedup_code": False, "shuffle_pairs": False, **kw}


def test_build_examples_mv_reads_no_ground_truth():
    task = synth_task("ttt", seed=15, hide_test=True)
    rows = [dict(r) for r in mv_rows(task)]
    for r in rows:
        r["correct_test_input"] = None
    table = rows_to_table(rows).drop_columns(["correct_test_input"])
    exs, stats = build_examples(table, {"ttt": task}, cfg(use_test=False, sample_selection="greedy_diverse_mv",
                                                          per_task=8))
    assert len(exs) == 8 and stats["sample"] == {"code_duplicates": 0, "greedy": 4, "diverse": 4}
    # the same archive with poisoned test flags and a task with (wrong) test outputs gives the same examples
    poisoned = rows_to_table([dict(r, correct_test_input=[True]) for r in rows])
    leaky = Task("ttt", task.train, (Pair(task.test[0].input, [[9]]),))
    exs2, _ = build_examples(poisoned, {"ttt": leaky}, cfg(use_test=False, sample_selection="greedy_diverse_mv",
                                                            per_task=8))
    assert exs2 == exs


def lineage(task: Task) -> list[dict]:
    """Parents in each bin with correct children (codes name the parent), plus wrong / test-wrong / orphan children."""
    rows = []
    flags = {"zero": [False] * 4, "low": [True, False, False, False], "medium": [True, True, False, False],
             "max_zero": [True] * 4}
    per_bin = {"zero": 10, "low": 2, "medium": 10, "max_zero": 10}
    for k, (b, f) in enumerate(flags.items()):
        for i in range(per_bin[b]):
            pid = f"{b}{i}"
            rows.append(synth_row(task, pid, f, [False], wrong=100 * k + i,
                                  code=f"def transform(grid):\n    return parent_{pid}(grid)"))
            rows.append(synth_row(task, f"child_{pid}", [True] * 4, [True], kind="refine", parent_id=pid,
                                  code=f"def transform(grid):\n    return child_of_{pid}(grid)"))
    rows.append(synth_row(task, "max0", [True] * 4, [True], code="def transform(grid):\n    return parent_max0(grid)"))
    rows.append(synth_row(task, "child_max0", [True] * 4, [True], kind="refine", parent_id="max0"))
    rows.append(synth_row(task, "child_wrong", [True, True, True, False], [True], kind="refine", parent_id="zero0",
                          wrong=77))
    rows.append(synth_row(task, "child_testwrong", [True] * 4, [False], kind="refine", parent_id="zero1", wrong=78))
    rows.append(synth_row(task, "child_orphan", [True] * 4, [True], kind="refine", parent_id="gone"))
    rows.append(synth_row(task, "child_noparent", [True] * 4, [True], kind="refine", parent_id=None))
    return rows


def test_refinement_lineage_and_correct_children_only():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    exs, stats = build_examples(table, {"ref": task}, cfg(mode="refine", refine_selection="uniform"))
    assert {e.kind for e in exs} == {"refine"} and len(exs) == 32
    for e in exs:
        parent = e.program_id.removeprefix("child_")
        assert f"return parent_{parent}(grid)" in e.messages[1]["content"]
        assert e.response == f"```python\ndef transform(grid):\n    return child_of_{parent}(grid)\n```"
        assert e.task_id == "ref" and e.messages[0]["role"] == "system"
    assert not {"child_wrong", "child_testwrong", "child_orphan", "child_noparent", "child_max0"} & {
        e.program_id for e in exs}
    r = stats["refine"]
    assert (r["missing_parent"], r["excluded_parent_bin"], r["correct_children"], r["children"]) == (2, 1, 35, 37)
    # the prompt is exactly the inference refinement prompt of the original task with the parent's results
    rows = {x["program_id"]: x for x in table.to_pylist()}
    e = next(e for e in exs if e.program_id == "child_low0")
    p = rows["low0"]
    assert e.messages == refinement_messages(task, p["code"], row_outputs(p), p["correct_train_input"])
    assert "correctly worked on 1/4 train input-output pairs" in e.messages[1]["content"]


def test_refinement_without_test_outputs_keeps_train_perfect_children():
    task = synth_task("ref", seed=16)
    rows = lineage(task)
    for r in rows:
        r["correct_test_input"] = None
    hidden = Task("ref", task.train, tuple(Pair(p.input, None) for p in task.test))
    table = rows_to_table(rows).drop_columns(["correct_test_input"])
    exs, stats = build_examples(table, {"ref": hidden}, cfg(use_test=False, mode="refine", refine_selection="uniform"))
    # without ground truth: the test-wrong child counts, "max" parents are refinable ("max_zero" does not exist)
    assert "child_testwrong" in {e.program_id for e in exs} and "child_max0" in {e.program_id for e in exs}
    assert stats["refine"]["available_by_bin"]["max"] == 11 and stats["refine"]["missing_parent"] == 2


def test_diverse_refinement_balances_parent_bins():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    for n, expect in ((8, {"zero": 2, "low": 2, "medium": 2, "max_zero": 2}), (20, None)):
        exs, stats = build_examples(table, {"ref": task}, cfg(mode="refine", refine_per_task=n))
        sel = stats["refine"]["selected_by_bin"]
        assert len(exs) == n and sum(sel.values()) == n
        if expect:
            assert {b: v for b, v in sel.items() if v} == expect
        else:  # 5 per bin, low has only 2, the 3 left go to other bins
            assert sel["low"] == 2 and all(sel[b] >= 5 for b in ("zero", "medium", "max_zero"))
    assert stats["per_task"]["refine"] == {"min": 20, "mean": 20.0, "max": 20}


def test_parent_lookup_in_pooled_archives():
    task = synth_task("ref", seed=16)
    a = synth_row(task, "p", [False] * 4, [False], model="A", wrong=1, code="def transform(grid):\n    return pA(grid)")
    b = synth_row(task, "p", [True, False, False, False], [False], model="B", wrong=2,
                  code="def transform(grid):\n    return pB(grid)")
    child = synth_row(task, "k", [True] * 4, [True], kind="refine", parent_id="p", model="B")
    exs, stats = build_examples(rows_to_table([a, b, child]), {"ref": task}, cfg(mode="refine"))
    assert len(exs) == 1 and "pB(grid)" in exs[0].messages[1]["content"] and "pA" not in exs[0].messages[1]["content"]
    assert stats["refine"]["selected_by_bin"]["low"] == 1 and stats["refine"]["ambiguous_parent"] == 0


def real_archive(executor, tmp_path: Path) -> tuple[pa.Table, dict[str, Task]]:
    tasks = {t: SPLIT[t] for t in ("6150a2bd", "3c9b0459", "25ff71a9")}
    archive = ProgramArchive(tmp_path / "programs.parquet")
    for tid, task in tasks.items():
        samples = executed_rows(executor, task, [ROT, ROT_LONG, FLIP_V, FLIP_H, TRANSPOSE, IDENT, CRASH, ZERO],
                      prefix=f"0/{tid}/s", model="base")
        archive.append(samples)
        children = executed_rows(executor, task, [ROT, FLIP_H], prefix=f"0/{tid}/r", kind="refine", model="base",
                       parent_id=f"0/{tid}/s2")
        archive.append(children)
    return archive.read(), tasks


def test_build_examples_on_real_programs(executor, tmp_path):
    table, tasks = real_archive(executor, tmp_path)
    exs, stats = build_examples(table, tasks, cfg(mode="both", sample_selection="greedy", per_task=3))
    assert all(isinstance(e, Example) for e in exs)
    by_kind = {k: [e for e in exs if e.kind == k] for k in ("sample", "refine")}
    assert stats["examples"] == {"sample": len(by_kind["sample"]), "refine": len(by_kind["refine"]), "total": len(exs)}
    assert stats["filters"]["programs"] == len(table)
    # CRASH x3; IDENT x3, plus FLIP_H (sample and child) on 25ff71a9, whose inputs are mostly left-right symmetric
    assert stats["filters"]["dropped"] == {"invalid_grid": 3, "all_background": 3, "near_constant": 0,
                                           "identity": 5, "long_line": 0, "hardcoded_output": 0}
    assert stats["filters"]["kept"] == len(table) - 11
    # rotate-180 tasks: the two correct programs lead, the shorter first
    s6150 = [e for e in by_kind["sample"] if e.task_id == "6150a2bd"]
    assert {e.program_id for e in s6150[:2]} == {"0/6150a2bd/s0", "0/6150a2bd/r0"}  # same code: random order
    assert s6150[2].program_id == "0/6150a2bd/s1" and s6150[0].response == f"```python\n{ROT}\n```"
    # sampling prompts: inference prompt of the relabelled task, no few-shot, no test outputs
    rows = {(r["program_id"]): r for r in table.to_pylist()}
    for e in by_kind["sample"]:
        assert e.messages == sampling_messages(relabel(tasks[e.task_id], rows[e.program_id]))
        assert "Test Output" not in e.messages[1]["content"] and "# Task 1:" not in e.messages[1]["content"]
    # refinement: the correct child of the flip-vertical parent, on 6150a2bd and 3c9b0459 (25ff71a9 not rotation)
    assert sorted(e.program_id for e in by_kind["refine"]) == ["0/3c9b0459/r0", "0/6150a2bd/r0"]
    for e in by_kind["refine"]:
        assert FLIP_V in e.messages[1]["content"] and e.response == f"```python\n{ROT}\n```"
    keys = {"config", "rows", "rows_unknown_task", "tasks", "filters", "examples", "per_task", "sample", "refine",
            "response_chars"}
    assert keys <= set(stats) and set(stats["per_task"]) == {"sample", "refine"}
    assert stats["response_chars"]["all"]["min"] > 0
    assert json.loads(json.dumps(stats)) == stats  # logged as JSON


def test_relabelled_sampling_example_shows_program_outputs(executor):
    task = SPLIT["6150a2bd"]
    row = executed_rows(executor, task, [FLIP_V])[0]
    ex = sample_example(task, row)
    for out in row["predicted_train_output"]:
        assert format_grid(out) in ex.messages[1]["content"]
    assert format_grid(task.train[0].output) not in ex.messages[1]["content"]


def test_modes_and_config_validation():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    counts = {}
    for mode in MODES:
        exs, stats = build_examples(table, {"ref": task}, cfg(mode=mode, per_task=5, refine_per_task=4))
        counts[mode] = (stats["examples"]["sample"], stats["examples"]["refine"])
        assert len(exs) == sum(counts[mode])
    assert counts == {"sample": (5, 0), "refine": (0, 4), "both": (5, 4)}
    for bad, message in (({"mode": "all"}, "mode='all': allowed: sample, refine, both"),
                         ({"sample_selection": "best"}, "sample_selection='best': allowed: correct, uniform"),
                         ({"refine_selection": "best"}, "refine_selection='best': allowed: uniform, diverse"),
                         ({"per_task": -1}, "per_task=-1: must be an integer >= 0"),
                         ({"use_test": None}, "`use_test` true or false, not None"),
                         ({"use_test": "auto"}, "`use_test` true or false, not 'auto'")):
        with pytest.raises(ValueError, match=re.escape(message)):
            build_examples(table, {"ref": task}, cfg(**bad))
    assert set(SAMPLE_SELECTIONS) >= {"correct", "greedy_diverse_mv"} and REFINE_SELECTIONS == ("uniform", "diverse")
    _, stats = build_examples(table, {}, cfg())  # rows of unknown tasks are skipped and counted
    assert stats["rows_unknown_task"] == len(table) and stats["examples"]["total"] == 0


@pytest.mark.parametrize("selection", SAMPLE_SELECTIONS)
def test_every_selection_is_deterministic_and_bounded(selection):
    tasks = {f"t{i}": synth_task(f"t{i}", seed=20 + i) for i in range(3)}
    rows = [r for tid, t in tasks.items() for r in archive_rows(t)]
    table = rows_to_table(rows)
    c = cfg(mode="both", sample_selection=selection, per_task=6, refine_per_task=3, shuffle_pairs=True)
    a, sa = build_examples(table, tasks, c, seed=1)
    b, sb = build_examples(table, tasks, c, seed=1)
    assert a == b and sa == sb
    assert sa["per_task"]["sample"]["max"] <= 6
    if selection in ("uniform", "greedy_diverse"):
        other, _ = build_examples(table, tasks, c, seed=2)
        assert other != a


def test_shuffle_pairs_is_consistent_for_refinement():
    task = synth_task("ref", n_train=5, seed=30)
    parent = synth_row(task, "p", [False, False, True, False, False], [False], wrong=1,
                       code="def transform(grid):\n    return parent(grid)")
    child = synth_row(task, "k", [True] * 5, [True], kind="refine", parent_id="p")
    seen_positions = set()
    for s in range(8):
        ex = refine_example(task, child, parent, rng=np.random.default_rng(s))
        text = ex.messages[1]["content"]
        order = sorted(range(5), key=lambda i: text.index(format_grid(task.train[i].input)))
        pos = order.index(2) + 1  # where the parent's only correct pair is shown
        seen_positions.add(pos)
        assert f"## Output {pos} computed by `transform` is correct." in text
        assert text.count("is correct.") == 1
        # each wrong pair shows the parent's own output for that pair, under its shown index
        for shown, i in enumerate(order, 1):
            if i != 2:
                block = text.split(f"## Output {shown} computed by `transform` is incorrect.\n")[1]
                assert block.split("##")[0].strip().endswith(format_grid(parent["predicted_train_output"][i]))
    assert len(seen_positions) > 1  # the pairs really move


def test_shuffled_sampling_example_keeps_every_pair():
    task = SPLIT["25ff71a9"]
    row = synth_row(task, "x", [True] * len(task.train), [True] * len(task.test))
    plain = sample_example(task, row, rng=None).messages[1]["content"]
    shuffled = sample_example(task, row, rng=np.random.default_rng(3)).messages[1]["content"]
    assert plain != shuffled and len(plain) == len(shuffled)
    def blocks(text):
        task_part = text.split("# Task to solve:\n")[1]
        return sorted(re.sub(r"## (Test )?(Input|Output) \d+", "", task_part).split("\n\n"))
    assert blocks(plain) == blocks(shuffled)



def test_refine_relabel_uses_every_kept_child_against_its_own_outputs():
    task = synth_task("ref", seed=16)
    table = rows_to_table(lineage(task))
    paper, _ = build_examples(table, {"ref": task}, cfg(mode="refine", refine_selection="uniform"))
    exs, stats = build_examples(table, {"ref": task}, cfg(mode="refine", refine_selection="uniform",
                                                           refine_relabel=True))
    r = stats["refine"]
    # the wrong and test-wrong children now count; child_max0 repeats its parent's outputs: nothing to learn
    assert (r["children"], r["correct_children"], r["missing_parent"], r["same_outputs"]) == (37, 35, 2, 1)
    assert r["excluded_parent_bin"] == 0 and len(exs) == 34
    got = {e.program_id: e for e in exs}
    assert {"child_wrong", "child_testwrong"} <= set(got) and "child_max0" not in got
    # a fully correct child relabels to its own task: the paper's example, unchanged
    for e in paper:
        assert got[e.program_id] == e
    # a wrong child: the task shown is relabelled with the child's outputs, the parent flagged against them
    rows = {x["program_id"]: x for x in table.to_pylist()}
    child, parent = rows["child_wrong"], rows["zero0"]
    target = relabel(task, child)
    assert target.train[3].output != task.train[3].output
    assert got["child_wrong"].messages == refinement_messages(target, parent["code"], row_outputs(parent), [False] * 4)
    # the test-wrong child's parent is right on the train pairs of the relabelled task, wrong on its test
    testwrong = got["child_testwrong"].messages[1]["content"]
    assert format_grid(child_test := rows["child_testwrong"]["predicted_test_output"][0]) not in testwrong
    assert child_test != task.test[0].output
    assert r["available_by_bin"]["zero"] == 12  # 10 correct children of "zero" parents, child_wrong, child_testwrong


def test_refine_relabel_on_real_programs_and_without_ground_truth(executor, tmp_path):
    table, tasks = real_archive(executor, tmp_path)
    same = executed_rows(executor, tasks["6150a2bd"], ["def transform(grid):\n    return list(reversed(grid))"],
                         prefix="0/6150a2bd/same", kind="refine", model="base", parent_id="0/6150a2bd/s2")
    table = pa.concat_tables([table, rows_to_table(same).cast(table.schema)])
    exs, stats = build_examples(table, tasks, cfg(mode="refine", refine_relabel=True))
    # the children of the flip-vertical parent are correct refinements of the tasks relabelled with their outputs
    # (flip-horizontal is dropped by the identity filter on 25ff71a9); a rewrite of the parent teaches nothing
    assert sorted(e.program_id for e in exs) == ["0/25ff71a9/r0", "0/3c9b0459/r0", "0/3c9b0459/r1", "0/6150a2bd/r0",
                                                 "0/6150a2bd/r1"]
    assert stats["refine"]["same_outputs"] == 1 and stats["refine"]["correct_children"] == 2
    # a reformatted copy of a child is a near-duplicate: counted, and the same examples come out
    copy = dict(next(r for r in table.to_pylist() if r["program_id"] == "0/6150a2bd/r0"))
    copy.update(program_id="0/6150a2bd/copy", code=copy["code"].replace("grid", "g") + "  # same program")
    doubled = pa.concat_tables([table, pa.Table.from_pylist([copy], schema=table.schema)])
    deduped, dstats = build_examples(doubled, tasks, cfg(mode="refine", refine_relabel=True, dedup_code="normalised"))
    assert dstats["refine"]["code_duplicates"] == 1 and sorted(e.program_id for e in deduped) == sorted(
        e.program_id for e in exs)
    rows = {r["program_id"]: r for r in table.to_pylist()}
    for e in exs:
        child = rows[e.program_id]
        assert e.response == f"```python\n{child['code']}\n```" and FLIP_V in e.messages[1]["content"]
        for out in child["predicted_train_output"]:
            assert format_grid(out) in e.messages[1]["content"]
    # test-time data: no ground truth read, the same examples with poisoned flags and leaky test outputs
    hidden = {t: Task(t, task.train, tuple(Pair(p.input, None) for p in task.test)) for t, task in tasks.items()}
    leaky = {t: Task(t, task.train, tuple(Pair(p.input, [[9]]) for p in task.test)) for t, task in tasks.items()}
    plain = table.drop_columns(["correct_test_input"])
    poisoned = table.set_column(table.column_names.index("correct_test_input"), "correct_test_input",
                                pa.array([[True]] * len(table), table.schema.field("correct_test_input").type))
    no_truth = cfg(use_test=False, mode="refine", refine_relabel=True)
    ttt, _ = build_examples(plain, hidden, no_truth)
    assert ttt == build_examples(poisoned, leaky, no_truth)[0]
    assert sorted(e.program_id for e in ttt) == sorted(e.program_id for e in exs)
