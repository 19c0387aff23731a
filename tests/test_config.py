"""Every config composes with Hydra, the CLI answers --help / --cfg, and bad overrides fail clearly."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from soar.search.run import check_config

CONF = ROOT / "conf"
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir() and g.name != "hydra"}
GLOBAL = {"experiment", "preset"}  # @package _global_ groups of the loop: tests/test_experiments.py
PRIMARY = {  # each entry point's config and the groups of its defaults list
    name: [next(iter(d)) for d in OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml").defaults)
           if isinstance(d, dict)]
    for name in ("search", "train", "loop")
}
BASES = {("finetune", "base")}  # what the options of a group share, not an option on its own
CASES = [(p, g, o) for p, groups in PRIMARY.items() for g in groups if g not in GLOBAL for o in GROUPS[g]
         if (g, o) not in BASES]
RECIPES = [o for o in GROUPS["finetune"] if ("finetune", o) not in BASES]


def test_groups_are_the_ones_documented() -> None:
    assert set(PRIMARY["search"]) == {"data", "model", "search", "execution", "scoring", "shard_launcher", "logger"}
    assert {"data", "model", "finetune", "logger"} <= set(PRIMARY["train"])
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


def test_recipes_start_from_the_shared_base_and_fill_it() -> None:
    """Each finetune recipe is base.yaml plus its own scale (paper_qlora: paper plus QLoRA): the paper recipe no
    longer changes when the CPU demo does, and no recipe leaves a value of the base unset."""
    parents = {o: [d for d in OmegaConf.load(CONF / "finetune" / f"{o}.yaml").defaults if d != "_self_"]
               for o in RECIPES}
    assert parents == {"cpu_tiny": ["base"], "paper": ["base"], "paper_qlora": ["paper"]}
    for recipe in RECIPES:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            ft = compose("train", overrides=[f"finetune={recipe}"]).finetune
        assert not OmegaConf.missing_keys(ft), (recipe, OmegaConf.missing_keys(ft))


@pytest.mark.parametrize(("overrides", "base_model"), [
    (["model=qwen2_5_coder_14b", "finetune=paper"], "Qwen/Qwen2.5-Coder-14B-Instruct"),
    (["model=qwen2_5_72b", "finetune=paper_qlora"], "Qwen/Qwen2.5-72B-Instruct"),
    (["model.path=/ckpt/merged"], "/ckpt/merged"),
    (["model=replay"], "embedded:smollm2-135m-instruct"),  # a model without weights: the embedded default
])
def test_the_recipe_trains_the_model_groups_weights(overrides: list[str], base_model: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.finetune.base_model == base_model


def test_bad_values_are_named() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=["scoring.vote=median"])
    with pytest.raises(ValueError, match="scoring.vote='median'.*weighted"):
        check_config(cfg)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("search", overrides=["search.answer_prefix=5"])
    with pytest.raises(ValueError, match="search.answer_prefix=5: must be a string or null"):
        check_config(cfg)


def cli(*args: str, entry: tuple[str, ...] = ("search.py",)) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *entry, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_and_cfg_job() -> None:
    help_ = cli("--help")
    assert help_.returncode == 0 and "data: arc_agi_1, arc_agi_1_small, arc_agi_2, dir" in help_.stdout
    job = cli("--cfg", "job", "data.split=evaluation")
    assert job.returncode == 0 and "split: evaluation" in job.stdout


def test_unknown_group_option_lists_the_choices() -> None:
    proc = cli("data=arc_agi_9")
    assert proc.returncode != 0 and "arc_agi_1" in proc.stderr and "arc_agi_9" in proc.stderr


@pytest.mark.parametrize(("entry", "job", "expected"), [
    (("-m", "soar.search"), "search", "split: evaluation"),
    (("-m", "soar.finetune"), "train", "r: 256"),
    (("loop.py",), "loop", "iterations: 2"),
])
def test_every_job_runs_from_the_package_and_its_root_script(entry: tuple[str, ...], job: str, expected: str) -> None:
    """python -m soar.<stage> is the job (the loop starts its stages so); the root scripts are the same entry
    points; the log file is named by the job, whichever started it."""
    overrides = {"search": "data.split=evaluation", "train": "finetune=paper", "loop": "iterations=2"}[job]
    proc = cli("--cfg", "all", overrides, entry=entry)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout and f"    name: {job}\n" in proc.stdout
