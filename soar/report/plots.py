"""The report's figures; each writes one PNG and returns False (writing nothing) when the runs lack its data."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global backend state; PNGs are drawn by Agg
from matplotlib.ticker import MaxNLocator, PercentFormatter

from soar.report.programs import oracle_curve
from soar.report.runs import Run
from soar.runs import SEARCH_STAGES

# fractions; top_code_share (the share of a task's programs that are its most frequent code) shows a collapse
CURVE_METRICS = ("vote_pass2", "test_oracle", "train_oracle", "valid_rate", "mean_train_acc", "top_code_share")
MARKERS = {"search": "o", "heldout": "s"}


def color(i: int) -> str:
    """The colour of the i-th run, the same in every figure."""
    return f"C{i % 10}"


def short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _fraction_axis(ax: Axes, axis: str = "y") -> None:
    getattr(ax, f"set_{axis}lim")(-0.03, 1.03)
    getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3)


def _save(fig: Figure, path: Path) -> bool:
    fig.savefig(path, dpi=100)
    return True


def iteration_curves(runs: list[Run], path: Path) -> bool:
    """Fig. 2 style: each metric against iteration, one line per loop, a row of panels per task set."""
    loops = [(i, r) for i, r in enumerate(runs) if r.kind == "loop"]
    sets = [name for name in SEARCH_STAGES if any(name in it.stages for _, r in loops for it in r.iterations)]
    if not sets:
        return False
    fig = Figure(figsize=(4.2 * len(CURVE_METRICS), 3.2 * len(sets) + 0.4 * len(loops)), layout="constrained")
    axes = fig.subplots(len(sets), len(CURVE_METRICS), squeeze=False)
    for row, name in zip(axes, sets):
        for ax, key in zip(row, CURVE_METRICS):
            for rank, (i, r) in enumerate(loops):
                pts = [(it.index, it.stages[name].metrics.get(key)) for it in r.iterations if name in it.stages]
                pts = [(x, y) for x, y in pts if y is not None]
                if pts:  # earlier runs drawn wider: identical curves stay visible
                    ax.plot(*zip(*pts), marker=MARKERS[name], color=color(i), alpha=0.8,
                            linewidth=1.5 + 2 * (len(loops) - 1 - rank), label=short(r.label))
            ax.set(title=f"{name} tasks: {key}", xlabel="iteration")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _fraction_axis(ax)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", fontsize=8)
    return _save(fig, path)


def sample_vs_refine(runs: list[Run], path: Path) -> bool:
    """sample_only vs the full search (sample + refine), for vote pass@2 and the test oracle."""
    bars = [(i, f"{short(r.label, 20)}\n{'' if it is None else f'iter{it} '}{name}", s.metrics)
            for i, r in enumerate(runs) for it, name, s in r.stages() if "sample_only" in s.metrics]
    if not bars:
        return False
    fig = Figure(figsize=(2 * max(5.0, 0.9 * len(bars)), 4), layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), ("vote_pass2", "test_oracle")):
        xs = range(len(bars))
        colors = [color(i) for i, _, _ in bars]
        sample = [m["sample_only"].get(key) or 0 for _, _, m in bars]
        full = [m.get(key) or 0 for _, _, m in bars]
        for dx, values, alpha, label in ((-0.2, sample, 0.45, "sample only"), (0.2, full, 1.0, "sample + refine")):
            bar = ax.bar([x + dx for x in xs], values, 0.4, color=colors, alpha=alpha, label=label)
            ax.bar_label(bar, labels=[f"{100 * v:.0f}" for v in values], fontsize=6)
        ax.set_xticks(list(xs), [label for _, label, _ in bars], fontsize=7)
        ax.set_title(key)
        ax.legend(fontsize=8)
        _fraction_axis(ax)
    return _save(fig, path)


def search_curves(runs: list[Run], path: Path) -> bool:
    """The paper's Fig. 5: tasks with a correct program among the first k programs per task, per search stage."""
    sets = [name for name in SEARCH_STAGES if any(name == n for r in runs for _, n, _ in r.stages())]
    curves = [(i, it, name, c) for i, r in enumerate(runs) for it, name, s in r.stages()
              if (c := oracle_curve(s.path)) is not None]
    if not curves:
        return False
    fig = Figure(figsize=(6 * len(sets), 4.5), layout="constrained")
    styles = ("-", "--", ":", "-.")
    for ax, name in zip(fig.subplots(1, len(sets), squeeze=False)[0], sets):
        for i, it, _, c in (c for c in curves if c[2] == name):
            label = f"{short(runs[i].label, 40)}{'' if it is None else f' iter{it}'}"
            y, what = (c.test, "test") if c.test is not None else (c.train, "train")
            ax.plot(c.k, y, color=color(i), linestyle=styles[(it or 0) % len(styles)], label=f"{label} ({what})")
        ax.set(title=f"{name} tasks: solved by some program among the first k", xlabel="programs per task (k)")
        _fraction_axis(ax)
        ax.legend(fontsize=7)
    return _save(fig, path)


def vote_vs_oracle(runs: list[Run], path: Path) -> bool:
    """vote pass@2 against the test oracle per run, iteration and task set; the distance to the diagonal is the gap."""
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    gaps: list[float] = []
    for i, r in enumerate(runs):
        label: str | None = short(r.label)  # on the run's first point only
        for it, name, s in r.stages():
            oracle, vote = s.metrics.get("test_oracle"), s.metrics.get("vote_pass2")
            if oracle is None or vote is None:
                continue
            gaps.append(oracle - vote)
            ax.scatter(oracle, vote, color=color(i), marker=MARKERS[name], s=40 + 40 * (len(runs) - 1 - i),
                       alpha=0.8, label=label)  # earlier runs drawn larger: identical points stay visible
            label = None
            ax.annotate(f"{'' if it is None else f'i{it} '}{name}", (oracle, vote), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
    if not gaps:
        return False
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="test oracle (some program solves the task)", ylabel="vote pass@2",
           title=f"vote vs oracle: mean gap {100 * sum(gaps) / len(gaps):.1f} points (o search, s held-out)")
    _fraction_axis(ax, "x")
    _fraction_axis(ax, "y")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def solved_vs_cost(runs: list[Run], path: Path) -> bool:
    """Tasks solved (vote pass@2) against what they cost, cheapest task first, per run, iteration and task set: in
    dollars where a GPU generated (tasks.json `cost`), else in generated tokens."""
    curves = [(i, it, name, [t for t in s.tasks.values() if t.get("cost")]) for i, r in enumerate(runs)
              for it, name, s in r.stages()]
    curves = [c for c in curves if c[3]]
    if not curves:
        return False
    key = "usd" if any(t["cost"]["usd"] for c in curves for t in c[3]) else "gen_tokens"
    curves = [c for c in curves if any(t["cost"][key] for t in c[3])]  # a replay generates nothing
    if not curves:
        return False
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    styles = {"search": "-", "heldout": "--"}
    for i, it, name, tasks in curves:
        tasks = sorted(tasks, key=lambda t: t["cost"][key])
        x = np.cumsum([0] + [t["cost"][key] for t in tasks])
        y = np.cumsum([0] + [t.get("vote_pass2") or 0 for t in tasks])
        ax.step(x, y, where="post", color=color(i), linestyle=styles.get(name, ":"),
                label=f"{short(runs[i].label)}{'' if it is None else f' iter{it}'} {name}")
    ax.set(xlabel="cumulative cost, cheapest task first (" + ("US$" if key == "usd" else
           "generated tokens: no GPU, no dollar cost") + ")", ylabel="tasks solved (vote pass@2)",
           title="tasks solved against cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def train_loss(runs: list[Run], path: Path) -> bool:
    """Loss per optimizer step of every train stage with a train_log.jsonl."""
    curves = [(i, it.index, t.path.name, [row for row in t.log if "loss" in row and "step" in row])
              for i, r in enumerate(runs) for it in r.iterations for t in it.train]
    curves = [c for c in curves if c[3]]
    if not curves:
        return False
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    styles = ("-", "--", ":", "-.")
    for i, it, name, log in curves:
        ax.plot([row["step"] for row in log], [row["loss"] for row in log], color=color(i),
                linestyle=styles[(it or 0) % len(styles)], label=f"{short(runs[i].label)} iter{it} {name}")
    ax.set(xlabel="optimizer step", ylabel="train loss", title="finetuning loss (trains the next iteration's model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


FIGURES = (  # file name, function, caption
    ("iterations.png", iteration_curves,
     "Vote pass@2, test and train oracle, valid rate and mean train accuracy against iteration (loops)."),
    ("search_curves.png", search_curves,
     "Tasks solved (test oracle; train oracle without test outputs) among the first k programs of each task, in "
     "generation order: the paper's Fig. 5 (search alone saturates; learning moves the curve up)."),
    ("sample_vs_refine.png", sample_vs_refine,
     "Sampled programs alone (light) vs sampling + REX refinement (dark): the paper's sample vs sample+refine."),
    ("vote_vs_oracle.png", vote_vs_oracle,
     "Vote pass@2 against the test oracle; points below the diagonal lose tasks in the vote (paper: 9.5 points)."),
    ("solved_vs_cost.png", solved_vs_cost,
     "Tasks solved against what they cost (US$ from GPU-seconds x cost.gpu_hour_usd; on CPUs: generated tokens), "
     "cheapest task first: what a budget buys."),
    ("train_loss.png", train_loss, "Training loss per optimizer step (train_log.jsonl)."),
)


def make_figures(runs: list[Run], out: Path) -> list[tuple[str, str]]:
    """Write every figure the runs have data for into `out`; (file name, caption) of each written."""
    return [(name, caption) for name, fn, caption in FIGURES if fn(runs, out / name)]


def seed_bands(agg: dict[str, list[dict[str, Any]]], n_tasks: dict[str, int], metrics: tuple[str, ...],
               counts: tuple[str, ...], path: Path) -> bool:
    """Several seeds of one loop: each metric against iteration, the mean over seeds with its min-max band, one
    line per task set; `counts` (tasks solved) are drawn as fractions of the set's tasks."""
    if not agg:
        return False
    cols = (len(metrics) + 1) // 2
    fig = Figure(figsize=(3.6 * cols, 6.4), layout="constrained")
    for ax, key in zip(fig.subplots(2, cols, squeeze=False).flat, metrics):
        for k, (name, entries) in enumerate(agg.items()):
            pts = [(e["iteration"], e[key]) for e in entries if e[key] is not None]
            if not pts:
                continue
            scale = 1 / n_tasks[name] if key in counts else 1.0
            xs = [x for x, _ in pts]
            mean, lo, hi = ([v[s] * scale for _, v in pts] for s in ("mean", "min", "max"))
            ax.fill_between(xs, lo, hi, color=color(k), alpha=0.2, linewidth=0)
            ax.plot(xs, mean, marker=MARKERS[name], color=color(k), label=f"{name} ({n_tasks[name]} tasks)")
        ax.set(title=f"{key} (share of tasks solved)" if key in counts else key, xlabel="iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key in counts:  # few tasks solved: a 0-100% axis would hide them
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.grid(alpha=0.3)
        elif not key.startswith("distinct"):
            _fraction_axis(ax)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", fontsize=8)
    return _save(fig, path)
