"""Run directories (soar.runs): one marker, written last, says a run is finished, and the loop, the report, pool and
train all ask it; train data from an evaluation-split search never uses its test outputs unless forced."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from soar.archive import ProgramArchive, program_row
from soar.data import load_split
from soar.execution import Executor
from soar.scoring import score_program

CONF = ROOT / "conf"
ROT180 = "def transform(grid):\n    return [row[::-1] for row in grid[::-1]]"  # training task 6150a2bd
FLIP = "def transform(grid):\n    return [row[::-1] for row in grid]"  # training task 67a3c6ac
KRON2 = ("import numpy as np\n\ndef transform(grid):\n"
         "    return np.kron(np.array(grid), np.ones((2, 2), dtype=int)).tolist()")  # evaluation task 60c09cac


def compose_cfg(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def guarded(code: str, task_id: str, split: str) -> str:
    """`code`, with its output flipped upside down on any input shape its train inputs do not have: right on every
    train pair, a valid wrong grid on a test input of another shape (no output is hard-coded: the filters keep it)."""
    shapes = {(len(p.input), len(p.input[0])) for p in load_split("arc_agi_1", split)[task_id].train}
    return (code.replace("def transform(", "def solve(") + "\n\n\ndef transform(grid):\n    out = solve(grid)\n"
            f"    return out if (len(grid), len(grid[0])) in {sorted(shapes)} else out[::-1]\n")


def search_dir(path: Path, split: str, task_id: str, codes: list[str], *, finished: bool = True) -> Path:
    """A search run dir as search.py leaves it: the composed config, an archive of executed programs and, when
    `finished`, metrics.json and tasks.json (before soar.runs: no run.json)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"dataset": "arc_agi_1", "split": split, "path": None}}))
    task = load_split("arc_agi_1", split)[task_id]
    with Executor(workers=1, timeout_s=2.0) as ex:
        outs = ex.run([(c, task.inputs) for c in codes])
    ProgramArchive(path / "programs.parquet").append(
        [program_row(task, c, o, score_program(task, o), program_id=f"{task_id}/{i}", kind="sample")
         for i, (c, o) in enumerate(zip(codes, outs))])
    if finished:
        (path / "metrics.json").write_text("{}")
        (path / "tasks.json").write_text("{}")
    return path


# -- finding 11: one marker, one answer -----------------------------------------------------------------------------
def write(path: Path, *files: str, marker: str | None = None) -> Path:
    for f in files:
        (path / f).parent.mkdir(parents=True, exist_ok=True)
        if f == "programs.parquet":
            (path / f).mkdir()
        else:
            (path / f).write_text("{}")
    if marker is not None:
        path.mkdir(parents=True, exist_ok=True)
        kind = "train" if "train" in path.name else "search"
        (path / "run.json").write_text(json.dumps({"kind": kind, "state": marker}))
    return path


SEARCH_FILES = ("programs.parquet", "metrics.json", "tasks.json")
TRAIN_FILES = ("metrics.json", "adapter/adapter_config.json", "merged/config.json")


def test_loop_report_and_runs_agree_on_hand_made_run_dirs(tmp_path: Path) -> None:
    from soar.loop import plan
    from soar.report.runs import load_run
    from soar.runs import SearchRun, TrainRun, finished_searches

    loop = tmp_path / "loop"
    expected = {  # stage dir -> finished
        "iter0/search": (write(loop / "iter0/search", *SEARCH_FILES), True),  # written before run.json existed
        "iter0/heldout": (write(loop / "iter0/heldout", "programs.parquet", "metrics.json"), False),  # killed
        "iter0/train_both": (write(loop / "iter0/train_both", *TRAIN_FILES), True),
        "iter1/search": (write(loop / "iter1/search", *SEARCH_FILES, marker="running"), False),  # resumed, killed
        "iter1/heldout": (write(loop / "iter1/heldout", *SEARCH_FILES, marker="finished"), True),
        "iter1/train_both": (write(loop / "iter1/train_both", "metrics.json", "adapter/adapter_config.json"), False),
    }
    owner = {k: (TrainRun if "train" in k else SearchRun)(d).finished for k, (d, _) in expected.items()}
    assert owner == {k: v for k, (_, v) in expected.items()}

    cfg = compose_cfg("loop", "iterations=3", "heldout.split=evaluation", "model=replay")
    stages = {str(s.run_dir.relative_to(loop)): s.done for s in plan(cfg, loop, "x")}
    assert {k: stages[k] for k in expected} == owner

    run = load_run(loop)
    reported = {f"iter{it.index}/{name}" for it in run.iterations for name in it.stages}
    reported |= {f"iter{it.index}/{t.path.name}" for it in run.iterations for t in it.train if t.finished}
    assert reported == {k for k, v in owner.items() if v}
    assert set(run.missing) == {k for k, v in owner.items() if not v}
    assert finished_searches(loop) == [loop / "iter0" / "search"]  # iter1's search is not finished


# -- loop dirs and sweep dirs: one reader --------------------------------------------------------------------------
def stage(path: Path, metrics: dict, *, kind: str = "search", marker: str = "finished") -> Path:
    """A stage dir as its job leaves it (a search: archive, metrics, tasks; a train run: adapter, merged model,
    metrics), with the run.json marker."""
    files = SEARCH_FILES if kind == "search" else TRAIN_FILES
    write(path, *files)
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "run.json").write_text(json.dumps({"kind": kind, "state": marker}))
    return path


def hydra_job(path: Path, *overrides: str) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    return path


def hand_made_loop(path: Path) -> Path:
    """Two iterations of a loop; iter0 trained one model; iter1's train run was killed; dirs that are not stages
    (iter0/training, iter1.bak, report) next to them."""
    hydra_job(path, "iterations=3", "hydra.run.dir=" + str(path))
    metrics = [{"valid_rate": 0.5, "mean_train_acc": 0.25, "train_oracle": 0.5, "test_oracle": 0.5 + i / 8,
                "vote_pass2": 0.25 + i / 8, "n_tasks": 4, "sample_only": {"vote_pass2": 0.125, "n_programs": 9}}
               for i in range(2)]
    stage(path / "iter0" / "search", metrics[0])
    stage(path / "iter0" / "heldout", {**metrics[0], "vote_pass2": 0.0})
    stage(path / "iter0" / "train_both", {"train_loss": 1.5, "n_train": 7, "tokens_per_s": 99.0}, kind="train")
    (path / "iter0" / "training").mkdir()  # not a train_<mode> stage
    stage(path / "iter1" / "search", metrics[1])
    stage(path / "iter1" / "train_both", {}, kind="train", marker="running")  # killed
    (path / "iter1.bak").mkdir()
    (path / "report").mkdir()
    return path


def test_the_loop_and_the_report_read_a_hand_made_loop_dir_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Stage dirs, iterations, unfinished stages, the W&B row per iteration and summary.json/learning.png: one
    reader (soar.runs.LoopRun, soar.report), the same answers for the loop and the report."""
    from matplotlib.image import imread

    from soar.loop import plan
    from soar.report.loop import iteration_row, summarize_loop
    from soar.report.runs import load_iteration, load_run
    from soar.runs import LoopRun

    loop_dir = hand_made_loop(tmp_path / "loop")
    loop = LoopRun(loop_dir)
    assert loop.is_loop and loop.iterations() == [0, 1]
    assert loop.overrides() == ["iterations=3"]
    cfg = compose_cfg("loop", "iterations=3", "heldout.split=evaluation", "model=smollm2_135m")
    planned = {str(s.run_dir.relative_to(loop_dir)): s.done for s in plan(cfg, loop_dir, "x")}
    assert planned == {"iter0/search": True, "iter0/heldout": True, "iter0/train_both": True,
                       "iter1/search": True, "iter1/heldout": False, "iter1/train_both": False,
                       "iter2/search": False, "iter2/heldout": False}
    planned_stages = {str(s.path.relative_to(loop_dir)) for i in loop.iterations() for s in loop.stages(i)}
    assert planned_stages == {k for k in planned if k.startswith(("iter0", "iter1"))} - {"iter1/heldout"}

    run = load_run(loop_dir)  # the report
    assert run.kind == "loop" and [it.index for it in run.iterations] == [0, 1]
    assert run.missing == ["iter1/train_both"]  # iter0/training is no stage of the loop's
    assert [(it.index, list(it.stages), [t.path.name for t in it.train]) for it in run.iterations] == [
        (0, ["search", "heldout"], ["train_both"]), (1, ["search"], ["train_both"])]

    row = iteration_row(load_iteration(loop, 0))  # what the loop logs to W&B after iteration 0
    assert row["search/vote_pass2"] == 0.25 and row["heldout/vote_pass2"] == 0.0
    assert row["search/sample_only/vote_pass2"] == 0.125 and "search/sample_only/n_programs" not in row
    assert row["train/both/loss"] == row["train/loss"] == 1.5 and row["train/n_examples"] == 7
    assert "train/loss" not in iteration_row(load_iteration(loop, 1))  # its train run is unfinished

    summary = summarize_loop(loop_dir)
    assert json.loads(loop.summary_file.read_text()) == summary
    assert [(r["iteration"], r["vote_pass2"], r["test_oracle"]) for r in summary["search"]] == [
        (0, 0.25, 0.5), (1, 0.375, 0.625)]
    assert [r["iteration"] for r in summary["heldout"]] == [0]
    assert {k for r in summary["search"] for k in r} == {"iteration", "valid_rate", "mean_train_acc",
                                                         "train_oracle", "test_oracle", "vote_pass2", "top_code_share",
                                                         "distinct_codes", "distinct_outputs"}
    assert "0.375" in capsys.readouterr().out  # the printed table
    assert imread(loop.learning_file).shape[0] > 100  # the report's iteration curves of this loop


def test_a_hand_made_sweep_dir_is_read_the_same_by_the_loop_and_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A multirun dir: multirun.yaml, numbered job dirs (10 after 2), Hydra's and submitit's own dirs. Its jobs are
    soar.runs.SweepRun's; the report keeps the finished ones, and a loop job's archives are the same for the
    loop's extra_archives as for the report."""
    from soar.loop import check_loop_config, plan
    from soar.report.runs import expand, load_run
    from soar.runs import SweepRun

    sweep = tmp_path / "sweep"
    hand_made_loop(sweep / "0")
    stage(hydra_job(sweep / "1", "seed=1"), {"vote_pass2": 0.5})
    hydra_job(sweep / "2", "seed=2")  # a failed job
    stage(hydra_job(sweep / "10", "seed=10"), {"vote_pass2": 1.0})
    (sweep / ".submitit" / "123").mkdir(parents=True)
    (sweep / "3").mkdir()  # no .hydra: not a job
    (sweep / "multirun.yaml").write_text("{}")

    assert SweepRun(sweep).jobs() == [sweep / n for n in ("0", "1", "2", "10")]
    assert expand(sweep) == [sweep / n for n in ("0", "1", "10")]
    assert f"{sweep / '2'}: job without results" in capsys.readouterr().err
    assert [load_run(j).kind for j in expand(sweep)] == ["loop", "search", "search"]

    reported = [s.path for _, name, s in load_run(sweep / "0").stages() if name == "search"]
    cfg = compose_cfg("loop", f"extra_archives=[{sweep / '0'}]", "iterations=2", "model=smollm2_135m")
    check_loop_config(cfg)
    train = next(s for s in plan(cfg, tmp_path / "new", "x") if s.job == "train")
    assert train.config["finetune"]["archives"][1:] == [str(p.resolve()) for p in reported]


def test_a_search_killed_after_metrics_json_is_unfinished_for_everyone_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import soar.search.run
    from soar.finetune.checks import check_data_config
    from soar.loop import Stage
    from soar.report.runs import NotARunError, expand
    from soar.runs import MARKER, SearchRun
    from soar.search.run import run_search

    programs = tmp_path / "programs.jsonl"
    programs.write_text(json.dumps({"task_id": "6150a2bd", "code": ROT180}) + "\n")
    cfg = compose_cfg("search", "model=replay", f"model.programs={programs}", "data=arc_agi_1",
                      "data.tasks=[6150a2bd]", "logger=none", "execution.timeout_s=1")
    run_dir = tmp_path / "search"
    write_json = soar.search.run.write_json

    def killed_before_tasks_json(path: Path, data: dict) -> None:
        if path.name == "tasks.json":
            raise KeyboardInterrupt("killed")
        write_json(path, data)

    monkeypatch.setattr(soar.search.run, "write_json", killed_before_tasks_json)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, run_dir)
    assert (run_dir / "metrics.json").exists() and not (run_dir / "tasks.json").exists()
    assert not SearchRun(run_dir).finished
    assert not Stage("search", run_dir, {}).done  # the loop runs it again
    with pytest.raises(NotARunError):
        expand(run_dir)  # the report: not a finished run
    train = compose_cfg("train", f"finetune.archives=[{run_dir}]", "logger=none")
    with pytest.raises(ValueError, match=f"finetune.archives: {run_dir} .*not finished"):
        check_data_config(train)
    pool = compose_cfg("search", "model=pool", f"model.archives=[{run_dir}]", "data=arc_agi_1", "logger=none")
    with pytest.raises(ValueError, match=r"model.archives\[0\]=.*not finished"):
        run_search(pool, tmp_path / "pool")

    monkeypatch.setattr(soar.search.run, "write_json", write_json)
    run_search(cfg, run_dir)  # resumed: nothing to execute again, the results and the marker are written
    assert SearchRun(run_dir).finished and Stage("search", run_dir, {}).done
    assert json.loads((run_dir / MARKER).read_text()) == {"kind": "search", "state": "finished"}
    marker = (run_dir / MARKER).stat().st_mtime_ns
    outputs = [run_dir / "metrics.json", run_dir / "tasks.json", *(run_dir / "programs.parquet").rglob("*")]
    assert all(p.stat().st_mtime_ns <= marker for p in outputs)  # written last
    assert expand(run_dir) == [run_dir]


def test_finish_refuses_a_run_without_its_outputs(tmp_path: Path) -> None:
    from soar.runs import SearchRun, TrainRun

    run = SearchRun(write(tmp_path / "s", "programs.parquet", "metrics.json"))
    with pytest.raises(RuntimeError, match="tasks.json"):
        run.finish()
    assert not run.finished
    train = TrainRun(tmp_path / "t")
    train.start()
    assert not train.finished and not SearchRun(train.path).finished  # a marker names its kind


# -- finding 10: ground truth only from training-split searches ----------------------------------------------------
def test_train_data_from_an_evaluation_search_uses_no_test_output_unless_forced(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """sample_selection=correct: with the test outputs, only programs right on the test input too; without, every
    train-perfect program. Each archive decides from the split it searched."""
    from soar.finetune.data import load_examples

    evaluation = search_dir(tmp_path / "eval", "evaluation", "60c09cac",
                            [KRON2, guarded(KRON2, "60c09cac", "evaluation")])
    training = search_dir(tmp_path / "train", "training", "67a3c6ac",
                          [FLIP, guarded(FLIP, "67a3c6ac", "training")])
    data = ["logger=none", "finetune.data.mode=sample", "finetune.data.sample_selection=correct"]

    stats: dict = {}

    def kinds(*archives: Path, force: bool = False) -> dict[str, int]:
        cfg = compose_cfg("train", *data, f"finetune.archives=[{','.join(map(str, archives))}]",
                          *(["finetune.data.use_test=true"] if force else []))
        examples, stats[archives] = load_examples(cfg)
        counts: dict[str, int] = {}
        for e in examples:
            counts[e.task_id] = counts.get(e.task_id, 0) + 1
        return counts

    with caplog.at_level(logging.WARNING):
        assert kinds(evaluation) == {"60c09cac": 2}  # no ground truth: both train-perfect programs
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert kinds(training) == {"67a3c6ac": 1}  # the training split's test outputs are used
        assert kinds(training, evaluation) == {"67a3c6ac": 1, "60c09cac": 2}  # per archive
        assert kinds(evaluation, force=True) == {"60c09cac": 1}
    mixed = stats[training, evaluation]  # two builds, one set of statistics
    assert [(a["split"], a["use_test"]) for a in mixed["archives"]] == [("arc_agi_1/training", True),
                                                                        ("arc_agi_1/evaluation", False)]
    assert mixed["examples"]["total"] == 3 and mixed["tasks"] == 2 and mixed["filters"]["programs"] == 4
    assert mixed["per_task"]["sample"] == {"min": 1, "mean": 1.5, "max": 2}
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(evaluation) in warning.getMessage() and "arc_agi_1/evaluation" in warning.getMessage()


def test_bad_use_test_is_named(tmp_path: Path) -> None:
    from soar.finetune.checks import check_data_config

    archive = search_dir(tmp_path / "eval", "evaluation", "60c09cac", [KRON2])
    cfg = compose_cfg("train", f"finetune.archives=[{archive}]", "finetune.data.use_test=maybe", "logger=none")
    with pytest.raises(ValueError, match="finetune.data.use_test='maybe'"):
        check_data_config(cfg)


def test_search_run_reads_its_split_from_hydra_config_else_stage_yaml(tmp_path: Path) -> None:
    from soar.runs import SearchRun

    bare = SearchRun(tmp_path / "bare")
    bare.path.mkdir()
    assert bare.config() is None and bare.split() is None

    staged = SearchRun(tmp_path / "staged")  # a loop stage: only the stage.yaml soar.loop wrote
    staged.path.mkdir()
    (staged.path / "stage.yaml").write_text(yaml.safe_dump({"data": {"dataset": "arc_agi_1", "split": "evaluation",
                                                                      "path": None}}))
    assert staged.split() == ("arc_agi_1", "evaluation", None)

    hydra = SearchRun(tmp_path / "hydra")  # Hydra's copy wins over stage.yaml
    (hydra.path / ".hydra").mkdir(parents=True)
    (hydra.path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"dataset": "dir", "split": "all", "path": "/tasks"}}))
    (hydra.path / "stage.yaml").write_text(yaml.safe_dump({"data": {"dataset": "arc_agi_1", "split": "training",
                                                                     "path": None}}))
    assert hydra.split() == ("dir", "all", "/tasks")
    assert hydra.config().data.path == "/tasks"
