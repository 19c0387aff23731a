"""The self-improvement loop (spec §1.1): search with model θ_i, finetune a fresh LoRA on the base model over the
archives' hindsight data to get θ_{i+1}, search again.

    python loop.py iterations=2 [heldout.split=evaluation heldout.limit=6] [any override of the stages]
    python loop.py -m experiment=table2_sampling_data      # a paper ablation (conf/experiment/)
    (python loop.py = python -m soar.loop)

The loop composes one config, then plans its stages: iter<i>/search (and iter<i>/heldout), search jobs, and
iter<i>/train_<mode>, train jobs that finetune the loop's model (finetune.base_model is model.path), one per finetune
data mode that `models` asks for (Table 4). The searches of iteration i > 0 draw few-shot examples from the main
searches before them (search.fewshot_archives, App. D.5; only when the main split has ground truth). Each stage gets
its slice of the loop's config written to <stage dir>/stage.yaml and runs on it as its own process (python -m
soar.search or soar.finetune, in the loop's working directory; vLLM does not free its memory inside one). A stage that
soar.runs calls finished (its run.json, written last) is skipped, so a killed or requeued loop resumes where it
stopped; an unfinished one runs again and resumes from its outputs. Where each stage lives in the loop dir is
soar.runs.LoopRun's; the loop's summary.json, learning.png and per-iteration W&B rows are soar.report.loop's.
`dry_run=true` prints the plan and runs nothing.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from soar.hindsight import MODES  # finetune data modes; a model is named by the data it was trained on
from soar.io import write_text
from soar.report.loop import iteration_row, summarize_loop
from soar.report.runs import load_iteration
from soar.runs import LoopRun, RunDir, SearchRun, TrainRun, finished_searches, ground_truth_allowed
from soar.tracking import run_identity, tracking

JOBS = {"search": "soar.search", "train": "soar.finetune"}  # a stage's job -> the module that runs it (python -m)
SEARCH_NODES = ("seed", "data", "model", "search", "execution", "scoring", "shard_launcher", "cost", "logger")
TRAIN_NODES = ("seed", "data", "model", "finetune", "scoring", "logger")
LOOP_KEYS = ("name", "iterations", "models", "pool_archives", "extra_archives", "base_search", "final_search",
             "heldout", "ttt")
# Test-time training (spec §10): no ground truth, sampling data only, chosen by train accuracy and the vote.
TTT_DATA = {"use_test": False, "mode": "sample", "sample_selection": "greedy_diverse_mv"}


@dataclass
class Stage:
    job: str              # search | train (JOBS)
    run_dir: Path
    config: dict[str, Any]  # the stage's whole config (its stage.yaml)

    @property
    def run(self) -> RunDir:
        return SearchRun(self.run_dir) if self.job == "search" else TrainRun(self.run_dir)

    @property
    def done(self) -> bool:
        return self.run.finished


# -- the plan ------------------------------------------------------------------------------------------------------
def check_loop_config(cfg: DictConfig) -> None:
    for key in cfg.required:
        if OmegaConf.select(cfg, key) in (None, []):
            raise ValueError(f"{key} is required by experiment={cfg.name}: give it on the command line "
                             "(see the header of its conf/experiment file)")
    if not isinstance(cfg.iterations, int) or cfg.iterations < 1:
        raise ValueError(f"iterations={cfg.iterations!r}: must be an integer >= 1")
    for phase in ("sample", "refine"):
        if cfg.models[phase] not in ("base", *MODES):
            raise ValueError(f"models.{phase}={cfg.models[phase]!r}: allowed: base (no finetune) or the finetune "
                             f"data mode of the model: {', '.join(MODES)}")
    for key, d in [("base_search", cfg.base_search)] + [("extra_archives", d) for d in cfg.extra_archives or []]:
        if d is not None and not finished_searches(Path(d)):
            raise FileNotFoundError(f"{key}: {d} is neither a finished search run dir nor a loop dir with finished "
                                    "iter<i>/search run dirs (soar.runs)")


def trained_mode(cfg: DictConfig, phase: str) -> str | None:
    """The finetune data mode of the model that runs `phase` after iteration 0; None for the base model (TTT
    trains on sampling data only)."""
    choice = cfg.models[phase]
    return None if choice == "base" else "sample" if cfg.ttt else choice


def loop_group(cfg: DictConfig, loop_dir: Path) -> str:
    """The W&B group of all the loop's runs: logger.group, else the experiment's name, else one per sweep."""
    return cfg.logger.get("group") or cfg.name or run_identity(cfg, "loop", loop_dir)[1] or loop_dir.name


def plan(cfg: DictConfig, loop_dir: Path, label: str) -> list[Stage]:
    """Every stage of the loop, in order, with its config."""
    check_loop_config(cfg)
    base = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(base, dict)
    meta = {**{k: base[k] for k in LOOP_KEYS}, "dir": str(loop_dir), "label": label}
    group = loop_group(cfg, loop_dir)
    trainable = "path" in cfg.model  # a replayed search has no weights to swap
    modes = sorted({m for phase in ("sample", "refine") if (m := trained_mode(cfg, phase))})
    extra = [a.resolve() for d in cfg.extra_archives or [] for a in finished_searches(Path(d))]
    loop = LoopRun(loop_dir)

    def config(nodes: tuple[str, ...], run_dir: Path, i: int, updates: dict[str, Any]) -> dict[str, Any]:
        c = {k: copy.deepcopy(base[k]) for k in nodes}
        c.update(iteration=i, loop=meta, hydra={"run": {"dir": str(run_dir)}})
        if "group" in c["logger"]:  # W&B: one group per experiment, runs named by their sweep axes
            c["logger"]["group"] = group
            c["logger"]["run_name"] = f"{label}/{run_dir.relative_to(loop_dir).as_posix()}"
        for dotted, value in updates.items():
            *parents, key = dotted.split(".")
            node = c
            for p in parents:
                node = node[p]
            node[key] = value
        return c

    def weights(i: int, phase: str) -> str | None:
        """The merged model dir that `phase` uses in iteration i (None: the loop's own model)."""
        mode = trained_mode(cfg, phase)
        if i == 0 or mode is None or not trainable:
            return None
        return str(loop.train(i - 1, mode).merged)

    stages: list[Stage] = []
    for i in range(cfg.iterations):
        sampler, refiner = weights(i, "sample"), weights(i, "refine")
        model: dict[str, Any] = {"model.path": sampler, "model.lora": None} if sampler else {}
        if sampler and not cfg.fewshot_finetuned:  # the prompt the finetune trained on (no example, spec §9)
            model["search.use_fewshot"] = False
        if refiner != sampler and cfg.search.refine.budget > 0:
            model["search.refine.model"] = refiner or cfg.model.path
        searches: list[tuple[str, dict[str, Any]]] = [("search", {})] if i > 0 or cfg.base_search is None else []
        shots: dict[str, Any] = {}
        if i > 0 and ground_truth_allowed(cfg.data.split):  # few-shot examples of earlier generations (App. D.5)
            earlier = [str(loop.search(j).path) for j in reversed(range(i))]  # the latest first
            given = base["search"].get("fewshot_archives", [])
            shots["search.fewshot_archives"] = list(dict.fromkeys([*earlier, *given]))
        if i == cfg.iterations - 1 and not cfg.final_search:
            searches = []
        if any(v is not None for v in cfg.heldout.values()):
            searches.append(("heldout", {f"data.{k}": v for k, v in base["heldout"].items() if v is not None}))
        for name, data in searches:
            run_dir = loop.search(i, name).path
            stages.append(Stage("search", run_dir, config(SEARCH_NODES, run_dir, i, {**model, **shots, **data})))
        if i + 1 < cfg.iterations:
            sources = [loop.search(j).path for j in (range(i + 1) if cfg.pool_archives else [i])]
            archives = list(dict.fromkeys(str(p) for p in [*sources, *extra]))
            for mode in modes:
                updates: dict[str, Any] = {"finetune.archives": archives,
                                           "finetune.data.mode": mode}
                if cfg.ttt:
                    updates.update({f"finetune.data.{k}": v for k, v in TTT_DATA.items()})
                run_dir = loop.train(i, mode).path
                stages.append(Stage("train", run_dir, config(TRAIN_NODES, run_dir, i, updates)))
    return stages


# -- running it ----------------------------------------------------------------------------------------------------
def run_stage(stage: Stage) -> bool:
    """Run one stage in its own process; False when it was already done."""
    if stage.done:
        print(f"[soar.loop] {stage.run_dir} is done: skipped")
        return False
    stage.run_dir.mkdir(parents=True, exist_ok=True)
    config = stage.run_dir / "stage.yaml"
    write_text(config, yaml.safe_dump(stage.config, sort_keys=False))
    cmd = [sys.executable, "-m", JOBS[stage.job], "--config-dir", str(stage.run_dir.resolve()), "--config-name",
           "stage", f"hydra.job.name={stage.job}"]
    print(f"[soar.loop] {stage.job} in {stage.run_dir}", flush=True)
    if subprocess.run(cmd).returncode != 0 or not stage.done:
        raise RuntimeError(f"stage {stage.job} failed in {stage.run_dir} (config: {config}); "
                           "re-run the loop to resume from there")
    return True


def describe(stage: Stage) -> str:
    c = stage.config
    if stage.job == "search":
        refine = c["search"]["refine"].get("model")
        shots = "" if c["search"]["use_fewshot"] else " (no few-shot)"
        return (f"{stage.run_dir}: search {c['data']['name']}/{c['data']['split']} limit={c['data']['limit']} "
                f"sample={c['model']['path']}{shots} refine={refine or 'same'}")
    ft = c["finetune"]
    return (f"{stage.run_dir}: train {ft['base_model']} mode={ft['data']['mode']} "
            f"on {len(ft['archives'])} archive(s) {ft['archives']}")


def run_loop(cfg: DictConfig, loop_dir: Path, label: str | None = None) -> dict[str, Any]:
    label = label or loop_dir.name
    stages = plan(cfg, loop_dir, label)
    if cfg.dry_run:
        print("\n".join(describe(s) for s in stages))
        return {}
    loop = LoopRun(loop_dir)
    if cfg.base_search is not None and not (base := loop.search(0).path).exists():
        base.parent.mkdir(parents=True, exist_ok=True)  # the shared iteration 0 lives in one place
        base.symlink_to(Path(cfg.base_search).resolve(), target_is_directory=True)
    tracked = copy.deepcopy(cfg)
    if "group" in tracked.logger:
        tracked.logger.group = loop_group(cfg, loop_dir)
    with tracking(tracked, "loop", loop_dir) as tracker:
        for i in range(cfg.iterations):
            ran = [run_stage(s) for s in stages if s.run_dir.parent == loop.iteration_dir(i)]
            if any(ran):  # iterations finished by an earlier process were logged by it
                tracker.log({"iteration": i, **iteration_row(load_iteration(loop, i))}, step=i)
        summary = summarize_loop(loop_dir)  # summary.json and learning.png, from soar.report
        tracker.summary({f"{name}/{k}": v for name, rows in summary.items() for k, v in rows[-1].items()
                         if k != "iteration"})
    return summary


@hydra.main(config_path="../conf", config_name="loop", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_loop(cfg, Path(hc.runtime.output_dir), hc.job.override_dirname or None)


if __name__ == "__main__":
    main()
