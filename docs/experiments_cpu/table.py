"""The README's "Every experiment on 2 CPU cores" table, from the loop dirs that run.sh wrote.

    python docs/experiments_cpu/table.py [outputs/cpu]

One row per arm: iteration 0 -> the last iteration on the experiment's split (held-out tasks for table5, whose
main tasks are not searched again). "train examples": per model finetuned in iteration 0 (with its data mode when
there are two); "min": the arm's own stages (from each stage's stage.yaml to its run.json), the shared iteration 0
not counted.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

EXPERIMENTS = ("table2", "table3", "table4", "fig2", "table5", "ttt")
SKIP = ("experiment=", "preset=", "base_search=")


def arms(out: Path, name: str) -> list[tuple[str, Path]]:
    """(label, loop dir) of an experiment: a sweep's jobs in order, or one run."""
    top = out / name
    if not (top / "multirun.yaml").exists():
        return [(name, top)]
    found = []
    for job in sorted((d for d in top.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        found.append((f"{name} " + " ".join(o for o in overrides if not o.startswith(SKIP)), job))
    return found


def minutes(loop: Path) -> float:
    total = 0.0
    for done in loop.glob("iter*/*/run.json"):
        stage = done.parent
        if not stage.is_symlink():
            total += done.stat().st_mtime - (stage / "stage.yaml").stat().st_mtime
    return total / 60


def row(label: str, loop: Path) -> str:
    summary = json.loads((loop / "summary.json").read_text())
    kind = "heldout" if len(summary.get("heldout", [])) > len(summary["search"]) else "search"
    first, last = summary[kind][0], summary[kind][-1]
    n_tasks = json.loads((loop / f"iter{last['iteration']}" / kind / "metrics.json").read_text())["n_tasks"]
    trained = {m.parent.name.removeprefix("train_"): json.loads(m.read_text())["n_train"]
               for m in sorted(loop.glob("iter0/train_*/metrics.json"))}
    examples = " + ".join(f"{n} ({mode})" if len(trained) > 1 else str(n) for mode, n in trained.items())

    def arrow(key: str, fmt: str) -> str:
        return f"{fmt.format(first[key])} → {fmt.format(last[key])}"

    solved = f"{round(first['vote_pass2'] * n_tasks)}/{n_tasks} → {round(last['vote_pass2'] * n_tasks)}/{n_tasks}"
    cells = [label, examples or "–", arrow("valid_rate", "{:.1%}"), arrow("mean_train_acc", "{:.1%}"), solved,
             arrow("distinct_codes", "{:.1f}"), arrow("top_code_share", "{:.2f}"), f"{minutes(loop):.1f}"]
    return "| " + " | ".join(cells) + " |"


def main(out: Path) -> None:
    print("| experiment / arm | train examples | valid programs | mean train acc | solved (vote) "
          "| distinct programs per task | top program share | min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in EXPERIMENTS:
        for label, loop in arms(out, name):
            if (loop / "summary.json").exists():
                print(row(label, loop))
            elif loop.exists():  # e.g. Table 2's `correct` arm when iteration 0 solved no task (its train.log says)
                print(f"| {label} | – | no summary: stopped or still running | – | – | – | – | – |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/cpu"))
