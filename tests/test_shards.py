"""A sharded search (soar.search.shards): the plan, GPU groups, SLURM parameters, and end to end with submitit's
LocalExecutor (real shard processes, the real executor): a replay and a scripted-engine search give exactly the
unsharded rows and metrics; a killed shard resumes without redoing the others; a failed shard names itself and
its log; a second copy of a shard is refused."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from soar.archive import ProgramArchive
from soar.search.run import run_search
from soar.search.shards import (
    ShardDir,
    check_shards,
    gpu_groups,
    merge_figures,
    plan_shards,
    run_shard,
    slurm_parameters,
    visible_gpus,
)

DEMO_TASKS = ["6150a2bd", "3c9b0459", "74dd1130", "d631b094", "5582e5ca", "d037b0a7", "0d3d703e", "a85d4709",
              "e9afcf9a", "25d8a9c8", "9565186b", "44f52bb0"]  # the tasks of examples/replay_demo.jsonl
# what a search's metrics say about its programs (the rest is throughput: timings, shard counts)
RESULT_KEYS = ("n_tasks", "n_programs", "valid_rate", "mean_train_acc", "n_voters", "filtered", "train_oracle",
               "test_oracle", "test_oracle_kaggle", "vote_pass2", "vote_gap", "vote_pass2_unfiltered", "sample_only",
               "distinct_codes", "distinct_outputs", "top_code_share")
ROW_KEYS = ("program_id", "task_id", "parent_id", "kind", "code", "predicted_train_output", "predicted_test_output",
            "correct_train_input", "correct_test_input", "train_acc", "valid", "error")


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("search", overrides=["logger=none", "execution.timeout_s=0.5", *overrides])


def replay(*overrides: str) -> DictConfig:
    return config("model=replay", "data=arc_agi_1", f"data.tasks=[{','.join(DEMO_TASKS)}]",
                  "execution.batch_size=4", *overrides)


def rows(run_dir: Path) -> list[dict]:
    table = ProgramArchive(run_dir / "programs.parquet").read(list(ROW_KEYS))
    return sorted(table.to_pylist(), key=lambda r: r["program_id"])


def results(run_dir: Path) -> tuple[dict, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tasks = json.loads((run_dir / "tasks.json").read_text())
    for t in tasks.values():  # of the cost, the tokens are results; seconds are measurements
        t["cost"] = {k: t["cost"][k] for k in ("prompt_tokens", "gen_tokens")}
    return {k: metrics[k] for k in RESULT_KEYS if k in metrics}, tasks


@pytest.fixture
def shard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shard processes import this test's helpers (tests/scripted.py) and run from the repository root."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(ROOT)


# -- the plan and its checks -------------------------------------------------------------------------------------
def test_shards_are_disjoint_complete_and_balanced_by_prompt_length() -> None:
    lengths = {"a": 900, "b": 500, "c": 400, "d": 300, "e": 200, "f": 100}
    plan = plan_shards(lengths, 3)
    assert sorted(t for shard in plan for t in shard) == sorted(lengths)
    assert plan == [["a"], ["b", "e", "f"], ["c", "d"]]  # loads 900, 800, 700
    assert plan_shards(lengths, 3) == plan and plan_shards(lengths, 1) == [list(lengths)]


@pytest.mark.parametrize("value, message", [
    (0, "search.shards=0: must be a positive integer"),
    (-2, "search.shards=-2: must be a positive integer"),
    ("4", "search.shards='4': must be a positive integer"),
    (2.5, "search.shards=2.5: must be a positive integer"),
    (True, "search.shards=True: must be a positive integer"),
    (13, "search.shards=13: more shards than tasks (12)"),
])
def test_bad_shard_counts_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_shards(value, 12)
    assert check_shards(12, 12) == 12


def test_local_shards_get_their_own_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_groups(4, 2, list(range(8))) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert gpu_groups(2, "auto", [4, 5, 6, 7]) == [[4, 5], [6, 7]]
    assert gpu_groups(3, 1, []) == [[], [], []]  # a CPU machine
    with pytest.raises(ValueError, match="search.shards=3 with model.tensor_parallel_size=2 needs 6 GPUs; 4 visible"):
        gpu_groups(3, 2, [0, 1, 2, 3])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert visible_gpus() == [4, 5, 6, 7]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1a2b,GPU-3c4d")
    with pytest.raises(ValueError, match="integer GPU ids"):
        visible_gpus()


def test_slurm_shards_take_the_slurm_launchers_settings() -> None:
    shard = yaml.safe_load((ROOT / "conf" / "shard_launcher" / "slurm.yaml").read_text())
    hydra = yaml.safe_load((ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml").read_text())
    assert {k: v for k, v in shard.items() if k != "name"} == {k: v for k, v in hydra.items() if k != "defaults"}
    params = slurm_parameters({**shard, "partition": "gpu", "gpus_per_node": 4, "setup": ["module load cuda"]}, 64)
    assert params["slurm_partition"] == "gpu" and params["gpus_per_node"] == 4 and params["tasks_per_node"] == 1
    assert params["slurm_setup"] == ["module load cuda"] and params["slurm_array_parallelism"] == 64
    assert "slurm_account" not in params  # unset keys are left to SLURM


def test_shard_figures_add_up() -> None:
    a = {"tokens_generated": 100, "tokens_per_s": 10.0, "wall_s": 5.0, "dtype": "float32", "gpu_s": 20.0,
         "phases": {"sample": {"programs": 10, "tokens": 100, "tokens_per_program": 10.0}}}
    b = {"tokens_generated": 300, "tokens_per_s": 30.0, "wall_s": 9.0, "dtype": "float32", "gpu_s": 36.0,
         "phases": {"sample": {"programs": 30, "tokens": 300, "tokens_per_program": 10.0}}}
    merged = merge_figures([a, b])
    assert merged["tokens_generated"] == 400 and merged["tokens_per_s"] == 40.0 and merged["wall_s"] == 9.0
    assert merged["gpu_s"] == 56.0  # each shard's engine seconds x its GPUs
    assert merged["dtype"] == "float32" and merged["phases"]["sample"] == {"programs": 40, "tokens": 400,
                                                                          "tokens_per_program": 10.0}


# -- end to end -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sharded_replay_gives_the_unsharded_rows_and_metrics(tmp_path: Path, shard_env: None) -> None:
    run_search(replay(), tmp_path / "one")
    run_search(replay("search.shards=3"), tmp_path / "three")
    assert rows(tmp_path / "three") == rows(tmp_path / "one")
    assert results(tmp_path / "three") == results(tmp_path / "one")
    shards = ShardDir(tmp_path / "three")
    assert sorted(t for s in shards.plan() for t in s) == sorted(DEMO_TASKS) and len(shards.plan()) == 3
    parts = sorted(p.name for p in (tmp_path / "three" / "programs.parquet").glob("part-*.parquet"))
    assert parts and all(p.startswith(("part-s000-", "part-s001-", "part-s002-")) for p in parts)
    metrics = json.loads((tmp_path / "three" / "metrics.json").read_text())
    assert metrics["shards"] == 3 and metrics["n_programs_executed"] == metrics["n_programs"]
    assert (tmp_path / "three" / "run.json").read_text().count("finished") == 1


@pytest.mark.slow
def test_a_sharded_llm_search_gives_the_unsharded_rows_and_metrics(tmp_path: Path, shard_env: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    llm = ("data=arc_agi_1", "data.split=evaluation", "data.limit=4", "search.answer_prefix=null", "search.sample.budget=4",
           "search.sample.n=2", "search.refine.budget=4", "search.refine.n=2")
    import scripted

    import soar.search.llm

    # the engine that scripted_shard gives the shards, here for the unsharded search
    monkeypatch.setattr(soar.search.llm, "build_engine", lambda model, sampling: scripted.ScriptedEngine(
        scripted.by_prompt))
    run_search(config(*llm), tmp_path / "one")
    run_search(config(*llm, "search.shards=2"), tmp_path / "two", shard_job=scripted.scripted_shard)
    one = rows(tmp_path / "one")
    assert {r["kind"] for r in one} == {"sample", "refine"} and len(one) == 4 * 8
    assert rows(tmp_path / "two") == one
    assert results(tmp_path / "two") == results(tmp_path / "one")


@pytest.mark.slow
def test_a_killed_shard_fails_the_run_by_name_and_resumes_alone(tmp_path: Path, shard_env: None) -> None:
    import scripted

    run_search(replay(), tmp_path / "one")
    run_dir = tmp_path / "three"
    with pytest.raises(RuntimeError) as failure:
        run_search(replay("search.shards=3"), run_dir, shard_job=scripted.shard_killed_after_one_part)
    message = str(failure.value)
    assert "1 of 3 shard(s)" in message and "shard 1 (" in message and "killed after its first archive part" in message
    log = Path(message.split("its log: ")[1].split()[0])
    assert log.is_file() and "killed after its first archive part" in log.read_text()
    shards = ShardDir(run_dir)
    assert shards.finished(0) and shards.finished(2) and not shards.finished(1)
    assert not json.loads((run_dir / "run.json").read_text())["state"] == "finished"
    kept = {p.name: p.stat().st_mtime_ns for p in (run_dir / "programs.parquet").glob("part-s00[02]-*.parquet")}
    status = {k: shards.status_file(k).stat().st_mtime_ns for k in (0, 2)}

    run_search(replay("search.shards=3"), run_dir)  # the same command again
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "programs.parquet").glob("part-s00[02]-*.parquet")} == kept
    assert {k: shards.status_file(k).stat().st_mtime_ns for k in (0, 2)} == status  # not run again
    assert rows(run_dir) == rows(tmp_path / "one")  # shard 1 resumed: nothing lost, nothing twice
    assert results(run_dir) == results(tmp_path / "one")


def test_a_second_copy_of_a_shard_is_refused(tmp_path: Path) -> None:
    shards = ShardDir(tmp_path)
    shards.fix_plan([["6150a2bd"], ["3c9b0459"]])
    with shards.lock(0), pytest.raises(RuntimeError, match="shard 0 of .* is already running in another process"):
        run_shard(replay("search.shards=2"), str(tmp_path), 0)
    assert not (tmp_path / "programs.parquet").exists()  # refused before it wrote anything


def test_a_resumed_run_must_keep_its_shards(tmp_path: Path) -> None:
    ShardDir(tmp_path / "a").fix_plan([["x", "y"], ["z"]])
    with pytest.raises(ValueError, match=r"started with 2 shard\(s\) over other tasks"):
        ShardDir(tmp_path / "a").fix_plan([["x"], ["y"], ["z"]])
    unsharded = tmp_path / "b" / "programs.parquet"
    unsharded.mkdir(parents=True)
    (unsharded / "part-000000.parquet").touch()  # an unsharded run's part
    with pytest.raises(ValueError, match=r"started unsharded \(1 archive parts\); resume it with search.shards=1"):
        ShardDir(tmp_path / "b").fix_plan([["x"], ["y"]])


def test_the_loops_search_stages_run_sharded(tmp_path: Path) -> None:
    from soar.loop import plan

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("loop", overrides=["search.shards=4", "shard_launcher=slurm", "shard_launcher.partition=gpu"])
    searches = [s for s in plan(cfg, tmp_path, "test") if s.job == "search"]
    assert searches and all(s.config["search"]["shards"] == 4 for s in searches)
    assert all(s.config["shard_launcher"]["partition"] == "gpu" for s in searches)
