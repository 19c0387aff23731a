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
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir() and g.name != "hydra"}
GLOBAL = {"experiment", "preset"}  # @package _global_ groups of the loop: tests/test_experiments.py
PRIMARY = {  # each entry point's config and the groups of its defaults list
    name: [next(iter(d)) for d in OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml").defaults)
           if isinstance(d, dict)]
    for name in ("search", "train", "loop")
}
CASES = [(p, g, o) for p, groups in PRIMARY.items() for g in groups if g not in GLOBAL for o in GROUPS[g]]


def test_groups_are_the_ones_documented() -> None:
    assert set(PRIMARY["search"]) == {"data", "model", "search", "execution", "scoring", "logger"}
    assert {"data", "finetune", "logger"} <= set(PRIMARY["train"])
    assert set(PRIMARY["search"]) | set(PRIMARY["train"]) <= set(PRIMARY["loop"])
    assert set(GROUPS) == set(PRIMARY["loop"])  # no group is unused


@pytest.mark.parametrize(("primary", "group", "option"), CASES)
def test_every_option_composes(primary: str, group: str, option: str) -> None:
    overrides = [f"{group}={option}"] + (["data.path=/some/tasks"] if (group, option) == ("data", "dir") else [])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(primary, overrides=overrides, return_hydra_config=False)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg[group].name == option
    if primary == "search":
        check_config(cfg)


def test_bad_values_are_named() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=["scoring.vote=median"])
    with pytest.raises(ValueError, match="scoring.vote='median'.*weighted"):
        check_config(cfg)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=["search.answer_prefix=5"])
    with pytest.raises(ValueError, match="search.answer_prefix=5: must be a string or null"):
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
