"""Multiruns and SLURM operations: a real local submitit sweep of search.py (one W&B run per job, one group per
sweep), a real requeue landing in the same job dir and W&B run, every launcher preset on every entry point (and the
sbatch script submitit writes from it), Lightning's cluster environment. Run names and ids: test_tracking.py;
vLLM's tensor-parallel size: test_engines.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from wandb_records import run_contents

CONF = ROOT / "conf"
PRESETS = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))
PRIMARIES = ("search", "train", "loop")


def offline_runs(job_dir: Path) -> list[Path]:
    return sorted((job_dir / "wandb").glob("offline-run-*"))


# -- a real local multirun -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("sweep") / "replay_seeds"
    proc = subprocess.run(
        [sys.executable, "search.py", "-m", "hydra/launcher=local", "model=replay", "data=arc_agi_1", "data.limit=3",
         "execution.timeout_s=0.5", "seed=0,1", f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_local_multirun_one_dir_and_output_per_job(sweep: Path) -> None:
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    for num, job in enumerate(jobs):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["n_programs"] > 0 and (job / "programs.parquet").is_dir()
        assert OmegaConf.load(job / ".hydra" / "config.yaml").seed == num
    assert (sweep / "multirun.yaml").exists()
    logs = list((sweep / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 2, "one submitit job (own process) per run"
    assert len(list((sweep / ".submitit").glob("*/*_0_result.pkl"))) == 2


@pytest.mark.slow
def test_local_multirun_one_wandb_run_per_job_in_one_group(sweep: Path) -> None:
    runs = {}
    for num in (0, 1):
        (offline,) = offline_runs(sweep / str(num))
        runs[num] = run_contents(offline)
    for num, run in runs.items():
        assert run["exit_code"] == 0 and run["run"].job_type == "search"
        assert run["config"]["seed"] == num and run["config"]["model"]["name"] == "replay"
        assert f"seed={num}" in run["run"].display_name and run["run"].display_name.startswith("search-")
        assert run["run"].run_id == (sweep / str(num) / "wandb_run_id").read_text().strip()
    assert runs[0]["run"].run_group == runs[1]["run"].run_group == f"search-{sweep.parent.name}-{sweep.name}"
    assert runs[0]["run"].run_id != runs[1]["run"].run_id


# -- a real requeue ------------------------------------------------------------------------------------------------
REQUEUE_APP = """
import os, signal, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from soar.tracking import tracking


@hydra.main(config_path={conf!r}, config_name="search", version_base="1.3")
def main(cfg):
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    with open("attempts.txt", "a") as f:
        f.write(f"{{job_dir}}\\n")
    with tracking(cfg, "search", job_dir) as tracker:
        first = not (job_dir / "attempted").exists()
        (job_dir / "attempted").touch()
        tracker.log({{"attempt": 0 if first else 1}})
        if first:
            time.sleep(1.5)  # the clock moves on: a re-resolved ${{now:...}} sweep dir would differ
            os.kill(os.getpid(), signal.SIGUSR2)  # what SLURM sends signal_delay_s before the time limit
            time.sleep(60)


main()
"""


@pytest.mark.slow
def test_requeued_job_resumes_in_its_dir_and_wandb_run(tmp_path: Path) -> None:
    """The default sweep dir has ${now:...}: the requeued process must not re-resolve it."""
    app = tmp_path / "app.py"
    app.write_text(REQUEUE_APP.format(conf=str(CONF)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(app), "-m", "hydra/launcher=local", "seed=3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = (tmp_path / "attempts.txt").read_text().split()
    assert len(attempts) == 2 and attempts[0] == attempts[1]  # requeued once, into the same job dir
    (sweep_dir,) = (tmp_path / "outputs" / "multirun" / "search").glob("*/*")  # no second dated sweep dir
    job = Path(attempts[0])
    assert job == sweep_dir.resolve() / "0"
    (log,) = (sweep_dir / ".submitit").glob("*/*_0_log.out")
    assert "Requeued job" in log.read_text() and "Job completed successfully" in log.read_text()
    run_id = (job / "wandb_run_id").read_text().strip()
    runs = [run_contents(r) for r in offline_runs(job)]
    assert [r["run"].run_id for r in runs] == [run_id, run_id]  # both attempts log to one W&B run
    assert sorted(r["exit_code"] for r in runs) == [0, 1]


# -- presets ---------------------------------------------------------------------------------------------------------
SLURM_KEYS = ("partition", "account", "timeout_min", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task",
              "mem_gb", "signal_delay_s", "max_num_timeout", "array_parallelism", "additional_parameters", "setup")


def test_presets_are_the_documented_ones() -> None:
    assert PRESETS == ["local", "slurm", "slurm_ddp"]


@pytest.mark.parametrize("primary", PRIMARIES)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_every_entry_point(primary: str, preset: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(primary, overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == preset
    assert launcher["submitit_folder"] == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # logs inside the sweep dir
    if preset == "local":
        assert launcher["_target_"].endswith("LocalLauncher")
        assert launcher["tasks_per_node"] == 1 and launcher["timeout_min"] >= 60 and launcher["gpus_per_node"] == 0
        return
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert all(k in launcher for k in SLURM_KEYS)
    assert launcher["partition"] is None and launcher["additional_parameters"] == {}
    assert launcher["max_num_timeout"] > 0 and launcher["signal_delay_s"] >= 120
    if preset == "slurm":  # one process using every GPU of the job (vLLM tensor parallelism)
        assert launcher["tasks_per_node"] == 1 and launcher["gpus_per_node"] == 1
    else:  # one process per GPU (Lightning DDP)
        assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4


def test_slurm_ddp_tasks_follow_the_gpus() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_ddp", "hydra.launcher.gpus_per_node=2"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == 2


@pytest.mark.parametrize(("preset", "expected"), [
    ("slurm", ["--gpus-per-node=2", "--ntasks-per-node=1", "--signal=USR2@300", "--partition=gpu", "--mem=128GB"]),
    ("slurm_ddp", ["--gpus-per-node=2", "--ntasks-per-node=2", "--cpus-per-task=8", "--partition=gpu"]),
])
def test_sbatch_script_from_the_preset(preset: str, expected: list[str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The preset's values go through submitit's own sbatch writer as hydra-submitit-launcher passes them."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit's SLURM executor insists on finding srun
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=[f"hydra/launcher={preset}", "hydra.launcher.partition=gpu",
                                           "hydra.launcher.gpus_per_node=2"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_"), params.pop("submitit_folder")
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "logs",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in expected:
        assert f"#SBATCH {line}\n" in script, script


# -- Lightning under SLURM: submitit owns requeue ----------------------------------------------------------------------
def test_lightning_cluster_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment

    from soar.finetune.cluster import cluster_plugins

    assert cluster_plugins() == []  # not on SLURM (conftest removes SLURM_*): Lightning's own detection, as before
    monkeypatch.setenv("SLURM_JOB_NAME", "soar")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    (env,) = cluster_plugins()  # slurm_ddp: one task per GPU
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue is False
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")
    (env,) = cluster_plugins()  # slurm / a loop's train stage: one task, Lightning starts any other rank
    assert isinstance(env, LightningEnvironment)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # srun --pty bash: not a batch job
    assert cluster_plugins() == []
