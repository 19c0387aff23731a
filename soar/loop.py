"""The self-improvement loop (spec §1.1): search with model θ_i, finetune a fresh LoRA on the base model over the
archives' hindsight data to get θ_{i+1}, search again.

    python -m soar.loop iterations=2 [heldout.split=evaluation heldout.limit=6] [overrides for the stages]

Every stage is a separate process (vLLM does not free its memory inside one), writing to
<loop dir>/iter<i>/{search,heldout,train}; a stage whose outputs exist is skipped, so a killed loop resumes where
it stopped. Overrides given to the loop are forwarded to the stages that know their keys (data, seed, logger to
both; model, search, execution, scoring to searches; finetune to training, whose base model is the loop's model).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from soar.search.results import write_json

ROOT = Path(__file__).resolve().parents[1]
SEARCH_KEYS = ("data", "model", "seed", "logger", "search", "execution", "scoring")
TRAIN_KEYS = ("data", "seed", "logger", "finetune")  # the base model comes from the loop's model config
# Test-time training (spec §10): no ground truth, sampling data only, chosen by train accuracy and the vote.
TTT_OVERRIDES = ("finetune.data.use_test=false", "finetune.data.mode=sample",
                 "finetune.data.sample_selection=greedy_diverse_mv")


def forwarded(overrides: list[str], keys: tuple[str, ...]) -> list[str]:
    """The loop's command-line overrides that a stage accepts (by their top-level key or config group)."""
    return [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0].split("/")[0] in keys]


def run_stage(script: str, run_dir: Path, args: list[str], done: Path) -> None:
    if done.exists():
        print(f"[soar.loop] {run_dir} is done: skipped")
        return
    cmd = [sys.executable, script, f"hydra.run.dir={run_dir}", *args]
    print(f"[soar.loop] {' '.join(cmd[1:])}", flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise RuntimeError(f"stage {script} failed in {run_dir}; re-run the loop to resume from there")


def run_loop(cfg: DictConfig, loop_dir: Path, overrides: list[str]) -> dict[str, Any]:
    # the stages' W&B runs share a group named after the loop, unless the user chose one
    group = [f"logger.group={loop_dir.name}"] if "group" in cfg.logger and cfg.logger.group is None else []
    heldout = [f"data.{k}={v}" for k, v in cfg.heldout.items() if v is not None]
    search_args = forwarded(overrides, SEARCH_KEYS) + group
    train_args = forwarded(overrides, TRAIN_KEYS) + group + (list(TTT_OVERRIDES) if cfg.ttt else [])
    if "path" in cfg.model:  # every iteration trains a fresh LoRA on the loop's base model (replay has none)
        train_args.append(f"finetune.base_model={cfg.model.path}")
    for i in range(cfg.iterations):
        it = loop_dir / f"iter{i}"
        trained = i > 0 and "path" in cfg.model  # a replayed search has no model to swap
        model = [f"model.path={loop_dir / f'iter{i - 1}' / 'train' / 'merged'}", "model.lora=null"] if trained else []
        stage = [f"iteration={i}", *model]
        run_stage("search.py", it / "search", search_args + stage, it / "search" / "metrics.json")
        if heldout:
            run_stage("search.py", it / "heldout", search_args + heldout + stage, it / "heldout" / "metrics.json")
        if i + 1 < cfg.iterations:
            sources = range(i + 1) if cfg.pool_archives else [i]
            archives = [loop_dir / f"iter{j}" / "search" for j in sources]
            train_dir = it / "train"
            run_stage("train.py", train_dir,
                      train_args + [f"iteration={i}", f"finetune.archives=[{','.join(map(str, archives))}]"],
                      train_dir / "metrics.json")  # written last by a finished training run
    return summarize_loop(loop_dir, cfg.iterations)


def summarize_loop(loop_dir: Path, iterations: int) -> dict[str, Any]:
    """metrics per iteration and search set -> summary.json, a printed table and learning.png."""
    keys = ("valid_rate", "mean_train_acc", "train_oracle", "test_oracle", "vote_pass2")
    summary: dict[str, Any] = {}
    for name in ("search", "heldout"):
        rows = []
        for i in range(iterations):
            path = loop_dir / f"iter{i}" / name / "metrics.json"
            if path.exists():
                m = json.loads(path.read_text())
                rows.append({"iteration": i, **{k: m.get(k) for k in keys}})
        if rows:
            summary[name] = rows
    write_json(loop_dir / "summary.json", summary)
    for name, rows in summary.items():
        print(f"\n{name}: " + " | ".join(f"{k:>14}" for k in ("iteration", *keys)))
        for r in rows:
            print(" " * (len(name) + 2) + " | ".join(f"{_fmt(r[k]):>14}" for k in ("iteration", *keys)))
    plot_loop(summary, keys, loop_dir / "learning.png")
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
    run_loop(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))


if __name__ == "__main__":
    main()
