"""Every config composes with Hydra, the CLI answers --help / --cfg, and bad overrides fail clearly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from soar.search import check_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir()}


def test_groups_are_the_ones_documented() -> None:
    assert {"data", "model", "search", "logger"} <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes(group: str, option: str) -> None:
    overrides = [f"{group}={option}"] + (["data.path=/some/tasks"] if (group, option) == ("data", "dir") else [])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=overrides, return_hydra_config=False)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg[group].name == option
    check_config(cfg)


def test_bad_values_are_named() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=["scoring.vote=median"])
    with pytest.raises(ValueError, match="scoring.vote='median'.*weighted"):
        check_config(cfg)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "search.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_and_cfg_job() -> None:
    help_ = cli("--help")
    assert help_.returncode == 0 and "data: arc_agi_1, arc_agi_1_small, arc_agi_2, dir" in help_.stdout
    job = cli("--cfg", "job", "data.split=evaluation")
    assert job.returncode == 0 and "split: evaluation" in job.stdout


def test_unknown_group_option_lists_the_choices() -> None:
    proc = cli("data=arc_agi_9")
    assert proc.returncode != 0 and "arc_agi_1" in proc.stderr and "arc_agi_9" in proc.stderr
