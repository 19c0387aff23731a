"""The self-improvement loop (spec §1.1): search with model θ_i, finetune a fresh LoRA on the base model over the
archives' hindsight data to get θ_{i+1}, search again.

    python -m soar.loop iterations=2 [heldout.split=evaluation heldout.limit=6] [any override of the stages]
    python -m soar.loop -m experiment=table2_sampling_data      # a paper ablation (conf/experiment/)

The loop composes one config, then plans its stages: iter<i>/search (and iter<i>/heldout) with search.py,
iter<i>/train_<mode> with train.py, one model per finetune data mode that `models` asks for (Table 4). The searches
of iteration i > 0 draw few-shot examples from the main searches before them (search.fewshot_archives, App. D.5;
only when the main split has ground truth). Each stage gets its slice of the loop's config written to
<stage dir>/stage.yaml and runs as its own process on it (vLLM does not free its memory inside one). A stage that
soar.runs calls finished (its run.json, written last) is skipped, so a killed or requeued loop resumes where it
stopped; an unfinished one runs again and resumes from its outputs.
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

from soar.runs import RunDir, SearchRun, TrainRun, finished_searches, ground_truth_allowed
from soar.io import write_json, write_text
from soar.tracking import run_identity, tracking

ROOT = Path(__file__).resolve().parents[1]
MODES = ("sample", "refine", "both")  # finetune data modes; a model is named by the data it was trained on
SEARCH_NODES = ("seed", "data", "model", "search", "execution", "scoring", "logger")
TRAIN_NODES = ("seed", "data", "finetune", "logger")
LOOP_KEYS = ("name", "iterations", "models", "pool_archives", "extra_archives", "base_search", "final_search",
             "heldout", "ttt")
# Test-time training (spec §10): no ground truth, sampling data only, chosen by train accuracy and the vote.
TTT_DATA = {"use_test": False, "mode": "sample", "sample_selection": "greedy_diverse_mv"}
SUMMARY_KEYS = ("valid_rate", "mean_train_acc", "train_oracle", "test_oracle", "vote_pass2")


@dataclass
class Stage:
    script: str           # search.py | train.py
    run_dir: Path
    config: dict[str, Any]  # the stage's whole config (its stage.yaml)

    @property
    def kind(self) -> str:
        return self.run_dir.name  # search | heldout | train_<mode>

    @property
    def run(self) -> RunDir:
        return SearchRun(self.run_dir) if self.script == "search.py" else TrainRun(self.run_dir)

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
        if d is not None and not archives_in(Path(d)):
            raise FileNotFoundError(f"{key}: {d} is neither a finished search run dir nor a loop dir with finished "
                                    "iter<i>/search run dirs (soar.runs)")


def archives_in(path: Path) -> list[Path]:
    """A finished search run dir, or every finished main search of a loop dir."""
    return finished_searches(path)


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
    extra = [a.resolve() for d in cfg.extra_archives or [] for a in archives_in(Path(d))]

    def config(nodes: tuple[str, ...], run_dir: Path, i: int, updates: dict[str, Any]) -> dict[str, Any]:
        c = {k: copy.deepcopy(base[k]) for k in nodes}
        c.update(iteration=i, loop=meta, hydra={"run": {"dir": str(run_dir)}})
        if "group" in c["logger"]:  # W&B: one group per experiment, runs named by their sweep axes
            c["logger"]["group"] = group
            c["logger"]["run_name"] = f"{label}/iter{i}/{run_dir.name}"
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
        return str(loop_dir / f"iter{i - 1}" / f"train_{mode}" / "merged")

    stages: list[Stage] = []
    for i in range(cfg.iterations):
        it = loop_dir / f"iter{i}"
        sampler, refiner = weights(i, "sample"), weights(i, "refine")
        model: dict[str, Any] = {"model.path": sampler, "model.lora": None} if sampler else {}
        if refiner != sampler and cfg.search.refine.budget > 0:
            model["search.refine.model"] = refiner or cfg.model.path
        searches = [("search", {})] if i > 0 or cfg.base_search is None else []
        shots: dict[str, Any] = {}
        if i > 0 and ground_truth_allowed(cfg.data.split):  # few-shot examples of earlier generations (App. D.5)
            earlier = [str(loop_dir / f"iter{j}" / "search") for j in reversed(range(i))]  # the latest first
            given = base["search"].get("fewshot_archives", [])
            shots["search.fewshot_archives"] = list(dict.fromkeys([*earlier, *given]))
        if i == cfg.iterations - 1 and not cfg.final_search:
            searches = []
        if any(v is not None for v in cfg.heldout.values()):
            searches.append(("heldout", {f"data.{k}": v for k, v in base["heldout"].items() if v is not None}))
        for name, data in searches:
            stages.append(Stage("search.py", it / name, config(SEARCH_NODES, it / name, i, {**model, **shots, **data})))
        if i + 1 < cfg.iterations:
            sources = [loop_dir / f"iter{j}" / "search" for j in (range(i + 1) if cfg.pool_archives else [i])]
            archives = list(dict.fromkeys(str(p) for p in [*sources, *extra]))
            for mode in modes:
                updates: dict[str, Any] = {"finetune.archives": archives,
                                           "finetune.data.mode": mode}
                if trainable:  # every iteration trains a fresh LoRA on the loop's base model
                    updates["finetune.base_model"] = cfg.model.path
                if cfg.ttt:
                    updates.update({f"finetune.data.{k}": v for k, v in TTT_DATA.items()})
                run_dir = it / f"train_{mode}"
                stages.append(Stage("train.py", run_dir, config(TRAIN_NODES, run_dir, i, updates)))
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
    cmd = [sys.executable, stage.script, "--config-dir", str(stage.run_dir.resolve()), "--config-name", "stage"]
    print(f"[soar.loop] {stage.script} in {stage.run_dir}", flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0 or not stage.done:
        raise RuntimeError(f"stage {stage.script} failed in {stage.run_dir} (config: {config}); "
                           "re-run the loop to resume from there")
    return True


def describe(stage: Stage) -> str:
    c = stage.config
    if stage.script == "search.py":
        refine = c["search"]["refine"].get("model")
        return (f"{stage.run_dir}: search {c['data']['name']}/{c['data']['split']} limit={c['data']['limit']} "
                f"sample={c['model']['path']} refine={refine or 'same'}")
    ft = c["finetune"]
    return (f"{stage.run_dir}: train {ft['base_model']} mode={ft['data']['mode']} "
            f"on {len(ft['archives'])} archive(s) {ft['archives']}")


def run_loop(cfg: DictConfig, loop_dir: Path, label: str | None = None) -> dict[str, Any]:
    label = label or loop_dir.name
    stages = plan(cfg, loop_dir, label)
    if cfg.dry_run:
        print("\n".join(describe(s) for s in stages))
        return {}
    if cfg.base_search is not None and not (loop_dir / "iter0" / "search").exists():
        (loop_dir / "iter0").mkdir(parents=True, exist_ok=True)  # the shared iteration 0 lives in one place
        (loop_dir / "iter0" / "search").symlink_to(Path(cfg.base_search).resolve(), target_is_directory=True)
    tracked = copy.deepcopy(cfg)
    if "group" in tracked.logger:
        tracked.logger.group = loop_group(cfg, loop_dir)
    with tracking(tracked, "loop", loop_dir) as tracker:
        for i in range(cfg.iterations):
            ran = [run_stage(s) for s in stages if s.run_dir.parent.name == f"iter{i}"]
            if any(ran):  # iterations finished by an earlier process were logged by it
                tracker.log({"iteration": i, **iteration_metrics(loop_dir / f"iter{i}")}, step=i)
        summary = summarize_loop(loop_dir, cfg.iterations)
        tracker.summary({f"{name}/{k}": rows[-1][k] for name, rows in summary.items() for k in SUMMARY_KEYS})
    return summary


def iteration_metrics(it: Path) -> dict[str, Any]:
    """One iteration's headline metrics under the names every run uses (search/vote_pass2, train/loss, ...)."""
    out: dict[str, Any] = {}
    for name in ("search", "heldout"):
        if (search := SearchRun(it / name)).finished:
            m = search.metrics()
            out.update({f"{name}/{k}": m.get(k) for k in SUMMARY_KEYS})
            out.update({f"{name}/sample_only/{k}": v for k, v in m.get("sample_only", {}).items() if k in SUMMARY_KEYS})
    trains = [run for d in sorted(it.glob("train_*")) if (run := TrainRun(d)).finished]
    for run in trains:
        m, mode = run.metrics(), run.path.name.removeprefix("train_")
        values = {"loss": m.get("train_loss"), "n_examples": m.get("n_train"), "tokens_per_s": m.get("tokens_per_s")}
        out.update({f"train/{mode}/{k}": v for k, v in values.items()})
        if len(trains) == 1:
            out.update({f"train/{k}": v for k, v in values.items()})
    return out


def summarize_loop(loop_dir: Path, iterations: int) -> dict[str, Any]:
    """metrics per iteration and search set -> summary.json, a printed table and learning.png."""
    summary: dict[str, Any] = {}
    for name in ("search", "heldout"):
        rows = []
        for i in range(iterations):
            if (search := SearchRun(loop_dir / f"iter{i}" / name)).finished:
                m = search.metrics()
                rows.append({"iteration": i, **{k: m.get(k) for k in SUMMARY_KEYS}})
        if rows:
            summary[name] = rows
    write_json(loop_dir / "summary.json", summary)
    for name, rows in summary.items():
        print(f"\n{name}: " + " | ".join(f"{k:>14}" for k in ("iteration", *SUMMARY_KEYS)))
        for r in rows:
            print(" " * (len(name) + 2) + " | ".join(f"{_fmt(r[k]):>14}" for k in ("iteration", *SUMMARY_KEYS)))
    if summary:
        plot_loop(summary, SUMMARY_KEYS, loop_dir / "learning.png")
    return summary


def _fmt(x: Any) -> str:
    return "-" if x is None else str(x) if isinstance(x, int) else f"{x:.3f}"


def plot_loop(summary: dict[str, Any], keys: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5.5 * len(summary), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], summary.items()):
        its = [r["iteration"] for r in rows]
        for k in keys:
            ax.plot(its, [r[k] if r[k] is not None else float("nan") for r in rows], marker="o", label=k)
        ax.set(title=f"{name} tasks", xlabel="iteration", ylabel="fraction", xticks=its, ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@hydra.main(config_path="../conf", config_name="loop", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_loop(cfg, Path(hc.runtime.output_dir), hc.job.override_dirname or None)


if __name__ == "__main__":
    main()
