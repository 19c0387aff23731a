"""The program archive: round-trip, crash safety, resume, extra columns, and reading outside sources."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from soar.archive import (
    ARCHIVE_COLUMNS,
    ARCHIVE_SCHEMA,
    ProgramArchive,
    TaskRows,
    program_row,
    read_programs,
    row_outputs,
)
from soar.archive.groups import output_groups
from soar.data.task import Pair, Task
from soar.execution.outcome import Failure, FailureKind
from soar.scoring import score_program

TASK = Task("t1", (Pair([[1]], [[2]]), Pair([[2, 3]], [[3, 4]])), (Pair([[5]], [[6]]),))
UNKNOWN = Task("t2", TASK.train, (Pair([[5]], None),))
ZDE = Failure(FailureKind.EXCEPTION, "ZeroDivisionError: division by zero")
GOOD = [((2,),), ((3, 4),), ((6,),)]
FAILS = [((2,),), ZDE, ZDE]


def row(pid: str, outputs=GOOD, task: Task = TASK, **kw) -> dict:
    return program_row(task, "def transform(g): ...", outputs, score_program(task, outputs), program_id=pid, kind="sample", **kw)


def batch(start: int, n: int) -> list[dict]:
    return [row(f"p{i}") for i in range(start, start + n)]


def test_program_row_fields():
    r = row("a", FAILS, iteration=2, model="qwen", parent_id="p0", text="```python ...```", temperature=1.0)
    assert r["error"] == "exception: ZeroDivisionError: division by zero"
    assert r["predicted_train_output"] == [[[2]], None] and r["predicted_test_output"] == [None]
    assert r["correct_train_input"] == [True, False] and r["correct_test_input"] == [False]
    assert (r["train_acc"], r["valid"], r["iteration"], r["temperature"]) == (0.5, False, 2, 1.0)
    ok = row("b", task=UNKNOWN)
    assert ok["error"] is None and ok["valid"] and ok["correct_test_input"] is None
    with pytest.raises(ValueError, match="kind"):
        program_row(TASK, "", GOOD, score_program(TASK, GOOD), program_id="c", kind="mutate")
    with pytest.raises(ValueError, match="clash"):
        row("d", train_acc=1.0)


def test_round_trip_with_failures(tmp_path):
    arch = ProgramArchive(tmp_path / "programs.parquet")
    rows = [row("a", FAILS, parent_id="x"), row("b", GOOD, task=UNKNOWN, text="raw")]
    arch.append(rows)
    table = arch.read()
    assert table.schema.equals(ARCHIVE_SCHEMA)
    assert table.to_pylist() == rows
    assert len(arch) == 2 and arch.program_ids() == {"a", "b"}
    back = table.to_pylist()
    assert row_outputs(back[0]) == FAILS and row_outputs(back[1]) == GOOD
    assert arch.read(["task_id", "valid"]).to_pylist() == [{"task_id": "t1", "valid": False}, {"task_id": "t2", "valid": True}]


def test_empty_archive_and_empty_append(tmp_path):
    arch = ProgramArchive(tmp_path / "programs.parquet")
    arch.append([])
    assert arch.parts() == [] and len(arch) == 0 and arch.program_ids() == set()
    assert arch.read().schema.equals(ARCHIVE_SCHEMA) and arch.read().num_rows == 0
    with pytest.raises(ValueError, match="lack archive column"):
        arch.append([{"program_id": "x"}])
    with pytest.raises(ValueError, match=r"non-nullable archive column\(s\): \['code'\]"):
        arch.append([{**row("a"), "code": None}])
    with pytest.raises(pa.ArrowInvalid):
        arch.append([{**row("a"), "iteration": "first"}])
    assert arch.parts() == [] and not list(arch.path.iterdir())


def test_leftover_temp_file_is_ignored_then_cleaned(tmp_path):
    path = tmp_path / "programs.parquet"
    arch = ProgramArchive(path)
    arch.append(batch(0, 3))
    leftover = path / ".part-000001.parquet.tmp"
    leftover.write_bytes(b"PAR1 half a part")  # what a write killed before os.replace leaves
    assert len(arch) == 3 and arch.read().num_rows == 3
    assert pads.dataset(path).to_table().num_rows == 3  # pyarrow's own dataset reader skips it too
    arch = ProgramArchive(path)  # reopening (a resumed run) removes it
    assert not leftover.exists()
    arch.append(batch(3, 2))
    assert [p.name for p in arch.parts()] == ["part-000000.parquet", "part-000001.parquet"]
    assert len(arch) == 5


def test_named_writers_share_one_archive_without_touching_each_others_parts(tmp_path):
    path = tmp_path / "programs.parquet"
    a, b = ProgramArchive(path, writer="s000"), ProgramArchive(path, writer="s001")
    a.append(batch(0, 2))
    b.append(batch(2, 3))
    a.append(batch(5, 1))
    assert [p.name for p in a.parts()] == ["part-s000-000000.parquet", "part-s000-000001.parquet"]
    assert a.program_ids() == {"p0", "p1", "p5"} and len(b) == 3  # each resumes from its own parts
    whole = ProgramArchive(path)  # the search that scores the shards reads every part, in writer order
    assert whole.read(["program_id"]).column("program_id").to_pylist() == ["p0", "p1", "p5", "p2", "p3", "p4"]
    in_flight = path / ".part-s001-000001.parquet.123.tmp"  # b is writing
    in_flight.write_bytes(b"PAR1 half a part")
    ProgramArchive(path, writer="s000")  # another writer starting (a requeued shard) leaves it alone
    ProgramArchive(path)
    assert in_flight.exists()
    ProgramArchive(path, writer="s001")  # only its own writer cleans it up
    assert not in_flight.exists()
    with pytest.raises(ValueError, match="archive writer name 's-1': letters and digits only"):
        ProgramArchive(path, writer="s-1")


_WRITER = """
import os, sys
from soar.archive import ProgramArchive
arch = ProgramArchive(sys.argv[1])
row = dict(program_id="", task_id="t", parent_id=None, kind="sample", iteration=0, model="", text=None,
           predicted_train_output=[[[1]]], predicted_test_output=[[[1]]], correct_train_input=[True],
           correct_test_input=[True], train_acc=1.0, valid=True, error=None)
for b in range(10**6):  # ~16 MB of incompressible code per part: writing the part dominates
    arch.append([{**row, "program_id": f"{b}-{i}", "code": os.urandom(16384).hex()} for i in range(500)])
"""


def _kill_writer_mid_part(path: Path) -> bool:
    """Run the writer, SIGKILL it while it writes a part (after one committed part); True if the
    kill landed before that part's os.replace (it can, rarely, land just after)."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while not (list(path.glob("part-*.parquet")) and list(path.glob(".*.tmp"))):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.001)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return bool(list(path.glob(".*.tmp")))


def test_killed_writer_never_leaves_a_partial_part(tmp_path):
    path = next(p for i in range(3) if _kill_writer_mid_part(p := tmp_path / f"run{i}" / "programs.parquet"))
    n_parts = len(list(path.glob("part-*.parquet")))
    arch = ProgramArchive(path)
    assert not list(path.glob(".*")), "reopening removes the killed write's temp file"
    ids = arch.program_ids()
    assert len(arch) == len(ids) == 500 * n_parts  # whole batches only, no duplicates
    arch.append([row("after-kill")])
    assert len(arch) == 500 * n_parts + 1


def test_resume_skips_programs_already_archived(tmp_path):
    """The caller's resume pattern: deterministic program ids, skip those already in the archive."""
    batches = [batch(0, 4), batch(4, 4), batch(8, 4)]

    def run(arch: ProgramArchive, kill_after: int | None = None) -> None:
        done = arch.program_ids()
        for i, rows in enumerate(batches):
            arch.append([r for r in rows if r["program_id"] not in done])
            if i == kill_after:
                raise KeyboardInterrupt  # the run dies between two batches

    path = tmp_path / "programs.parquet"
    with pytest.raises(KeyboardInterrupt):
        run(ProgramArchive(path), kill_after=1)
    assert len(ProgramArchive(path)) == 8
    run(ProgramArchive(path))  # the resumed run walks the same batches from the start
    arch = ProgramArchive(path)
    ids = arch.read(["program_id"]).column("program_id").to_pylist()
    assert sorted(ids) == sorted(f"p{i}" for i in range(12)) and len(arch.parts()) == 3


def test_extra_columns_across_parts(tmp_path):
    arch = ProgramArchive(tmp_path / "programs.parquet")
    arch.append([row("a", temperature=0.7), row("b", temperature=None)])
    arch.append([row("c", seed=3)])
    arch.append([row("d")])
    t = arch.read()
    assert t.column_names == [*ARCHIVE_COLUMNS, "temperature", "seed"]
    assert t.column("temperature").to_pylist() == [0.7, None, None, None]
    assert t.column("seed").to_pylist() == [None, None, 3, None]
    assert arch.read(["seed", "program_id"]).to_pylist()[2] == {"seed": 3, "program_id": "c"}
    with pytest.raises(ValueError, match="unknown column"):
        arch.read(["nope"])


def test_read_programs_jsonl(tmp_path):
    path = tmp_path / "progs.jsonl"
    lines = [{"task_id": "t1", "code": "a", "score": 1}, {"task_id": "t2", "code": "b", "score": 2}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    t = read_programs(path)
    assert t.to_pylist() == lines
    assert read_programs(path, columns=["score"]).column_names == ["task_id", "code", "score"]


def test_read_programs_soar_released_schema(tmp_path):
    grids = pa.list_(pa.list_(pa.list_(pa.int64())))
    schema = pa.schema([
        ("task_id", pa.string()), ("code", pa.string()),
        ("predicted_train_output", grids), ("predicted_test_output", grids),
        ("correct_train_input", pa.list_(pa.bool_())), ("correct_test_input", pa.list_(pa.bool_())),
    ])
    data = [{
        "task_id": "007bbfb7", "code": "def transform(grid): ...",
        "predicted_train_output": [[[2]], [[3, 4]]], "predicted_test_output": [[[6]]],
        "correct_train_input": [True, True], "correct_test_input": [True],
    }]
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(data, schema=schema), path)
    t = read_programs(path)
    assert t.schema.equals(schema) and t.to_pylist() == data
    assert row_outputs(t.to_pylist()[0]) == GOOD
    # a downloaded dataset directory (nested, with a non-parquet file) reads as one table
    (tmp_path / "ds" / "data").mkdir(parents=True)
    os.replace(path, tmp_path / "ds" / "data" / path.name)
    (tmp_path / "ds" / "README.md").write_text("card")
    assert read_programs(tmp_path / "ds").to_pylist() == data


def test_read_programs_archive_directory(tmp_path):
    arch = ProgramArchive(tmp_path / "programs.parquet")
    arch.append([row("a")])
    arch.append([row("b", seed=1)])
    (arch.path / ".part-000002.parquet.tmp").write_bytes(b"junk")
    t = read_programs(arch.path, columns=["program_id", "seed"])
    assert t.to_pylist() == [
        {"task_id": "t1", "code": "def transform(g): ...", "program_id": "a", "seed": None},
        {"task_id": "t1", "code": "def transform(g): ...", "program_id": "b", "seed": 1},
    ]


def test_read_programs_errors(tmp_path):
    jsonl = tmp_path / "no_code.jsonl"
    jsonl.write_text('{"task_id": "t1", "text": "x"}\n')
    with pytest.raises(ValueError, match=r"no_code\.jsonl: missing column\(s\) \['code'\]"):
        read_programs(jsonl)
    pq_path = tmp_path / "no_task.parquet"
    pq.write_table(pa.table({"code": ["x"]}), pq_path)
    with pytest.raises(ValueError, match=r"no_task\.parquet: missing column\(s\) \['task_id'\]"):
        read_programs(pq_path)
    ok = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"task_id": ["t1"], "code": ["x"]}), ok)
    with pytest.raises(ValueError, match=r"ok\.parquet: missing column\(s\) \['seed'\]"):
        read_programs(ok, columns=["seed"])
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="cannot read programs from .*broken.parquet"):
        read_programs(bad)
    bad_json = tmp_path / "broken.jsonl"
    bad_json.write_text('{"task_id": "t1", "code": \n')
    with pytest.raises(ValueError, match="cannot read programs from .*broken.jsonl"):
        read_programs(bad_json)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no .parquet files"):
        read_programs(tmp_path / "empty_dir")
    (tmp_path / "p.csv").write_text("task_id,code\n")
    with pytest.raises(ValueError, match="unsupported format '.csv'"):
        read_programs(tmp_path / "p.csv")
    with pytest.raises(FileNotFoundError):
        read_programs(tmp_path / "missing.parquet")


def test_archive_rows_are_unpacked_per_task_in_archive_order():
    table = pa.table({"task_id": ["b", "a", "x", "b", "a", "b"], "program_id": ["b0", "a0", "x0", "b1", "a1", "b2"]})
    rows = TaskRows(table, ["a", "b"])  # "x" is not a known task
    assert list(rows) == ["a", "b"] and len(rows) == 2 and rows.num_rows == 5
    assert [r["program_id"] for r in rows["b"]] == ["b0", "b1", "b2"]
    assert [r["program_id"] for r in rows["a"]] == ["a0", "a1"]


def _partition(groups) -> set[frozenset[int]]:
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, set()).add(i)
    return {frozenset(m) for m in members.values()}


@pytest.mark.parametrize("cell_type", [pa.int8(), pa.int64()])
def test_rows_are_grouped_exactly_by_the_value_of_their_outputs(cell_type):
    """Arrow-level grouping (no grid unpacked) agrees with grouping the unpacked values, over chunks and slices, for
    grids that hold the same cells in other shapes, empty and NULL grids, and NULL rows or cells (never merged)."""
    rng = random.Random(0)
    pool = [None, [], [[]], [[1, 2, 3, 4]], [[1, 2], [3, 4]], [[1], [2], [3], [4]], [[1, 2]], [[3, 4]], [[0]], [[9]],
            [[1, 2], [3, 4], [5, 6]]]
    strange = [[[1, None]], [None]]  # a NULL cell, a NULL row: possible in an outside dataset only
    grids = pa.list_(pa.list_(pa.list_(cell_type)))

    def outputs(k: int) -> list:
        return [rng.choice(pool + strange if rng.random() < 0.02 else pool) for _ in range(k)]

    kinds = [{"task_id": rng.choice("ab"), "error": rng.choice([None, None, "timeout"]),
              "predicted_train_output": outputs(2), "predicted_test_output": outputs(1)} for _ in range(150)]
    rows = [rng.choice(kinds) for _ in range(600)]  # a search repeats itself
    schema = pa.schema([("task_id", pa.string()), ("error", pa.string()), ("predicted_train_output", grids),
                        ("predicted_test_output", grids)])
    whole = pa.Table.from_pylist(rows, schema)
    cuts = [0, 1, 50, 51, 300, 599, 600]
    table = pa.concat_tables([whole.slice(a, b - a) for a, b in zip(cuts, cuts[1:])])  # sliced chunks
    assert table.column("predicted_train_output").num_chunks == len(cuts) - 1
    got = output_groups(table, ["predicted_train_output", "predicted_test_output"], ["task_id", "error"])
    nested_null = [any(g is not None and any(r is None or None in r for r in g) for g in
                       r["predicted_train_output"] + r["predicted_test_output"]) for r in rows]
    expected = [("alone", i) if nested_null[i] else json.dumps(r) for i, r in enumerate(rows)]
    assert sum(nested_null) > 0 and len(set(expected)) < 200  # both cases occur, and many rows repeat
    assert _partition(got) == _partition(expected)


def test_a_tasks_programs_come_grouped_with_each_rows_outputs():
    outputs = [GOOD, FAILS, GOOD, [((2,),), ((3, 4),), ((7,),)], FAILS, GOOD]
    rows = [row(f"p{i}", outs) | {"code": f"code {i}"} for i, outs in enumerate(outputs)]
    table = pa.Table.from_pylist(rows, ARCHIVE_SCHEMA)
    programs = TaskRows(table, ["t1"]).programs("t1")
    assert programs.codes == [f"code {i}" for i in range(6)]
    assert programs.behaviour == [0, 1, 0, 2, 1, 0]  # numbered in first-seen order
    assert [list(programs.outputs[b]) for b in programs.behaviour] == [row_outputs(r) for r in rows]


def test_task_rows_give_the_same_rows_whatever_the_batch_size():
    """Rows are gathered a batch of tasks at a time, part by part; tasks asked in any order, with batches of one
    task or of all of them, come back the same and in archive order."""
    rng = random.Random(1)
    outputs = [GOOD, FAILS, [((2,),), ((3, 4),), ((7,),)]]
    parts = []
    for p in range(5):  # five archive parts, every task in each, interleaved
        rows = [row(f"p{p}-{i}", rng.choice(outputs)) | {"code": f"code {p} {i}", "task_id": tid}
                for i, tid in enumerate(rng.choices(["a", "b", "c", "d"], k=7))]
        parts.append(pa.Table.from_pylist(rows, ARCHIVE_SCHEMA))
    table = pa.concat_tables(parts)
    assert table.column("code").num_chunks == 5
    expected = {tid: [r for r in table.to_pylist() if r["task_id"] == tid] for tid in "abcd"}
    for batch_rows in (1, 5, 10**9):
        rows = TaskRows(table, "abcd", batch_rows=batch_rows)
        for tid in rng.sample("abcd", 4) + rng.sample("abcd", 4):
            assert rows[tid] == expected[tid]
            assert rows.column(tid, "program_id") == [r["program_id"] for r in expected[tid]]
            programs = rows.programs(tid)
            assert programs.codes == [r["code"] for r in expected[tid]]
            assert [list(programs.outputs[b]) for b in programs.behaviour] == [row_outputs(r) for r in expected[tid]]
            assert sorted(set(programs.behaviour)) == list(range(len(programs.outputs)))  # first-seen numbering
            assert programs.behaviour[0] == 0 and all(b <= max(programs.behaviour[:i] + [-1]) + 1
                                                      for i, b in enumerate(programs.behaviour))
