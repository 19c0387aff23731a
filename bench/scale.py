"""The paper-size data path: a synthetic archive of one SOAR iteration (400 tasks x 6,000 programs) through every
stage that reads it, with wall time and peak memory per stage.

The archive: the real ARC-AGI-1 training tasks (their grid sizes and outputs); per task, sampled programs then
refined ones (`--refine` of them, each with a parent among the task's sampled programs, as REX picks: mostly
programs with some train accuracy). Programs are drawn from a set of distinct behaviours per task, as a real search
repeats itself: failures (timeouts, exceptions, invalid output), wrong outputs (the expected grids with cells
changed, or of another shape), partly correct (some train pairs right) and fully correct, in `--mix` proportions;
`--distinct` of the programs have outputs of their own (the rest repeat: an assumption, stated in the README).
Code is 300-1,500 characters (a unique comment per program), the raw answer wraps it in a fence and some prose.
Rows are appended one round at a time (`--per-round` programs of every task per part), as a search appends them.

Stages, each in its own process (its peak RSS is the child's ru_maxrss):
  write      the archive, part by part (the time of the appends only; building the synthetic rows is not counted)
  vote       read the archive, score every task (filters, weighted vote, oracles), again on the sampled programs
             alone (the paper's sample-only figure), and summarise, as a search job does
  hindsight  the finetune data as a train job builds it (read, filters, relabelling, mode=both: greedy_diverse
             sampling + diverse refinement data: `hindsight_s`); with --every-selection, then every selection
             on its own (sampling: correct, uniform, greedy, greedy_diverse, greedy_diverse_mv; refinement: uniform,
             diverse), each timed (`hindsight_all_s`: all of it)
  report     soar.report on the run dir (tables, figures, the grids of a few tasks)
Prints a table and `RESULT scale programs=<n> write_s=.. vote_s=.. hindsight_s=.. report_s=.. peak_rss_gb=..`.
Targets on a 2-core, 24 GB machine at paper size: hindsight <= 10 min, vote + metrics <= 2 min, report <= 2 min,
peak memory <= 8 GB.

    python bench/scale.py                          # 400 x 6,000 = 2.4 M programs (tens of minutes)
    python bench/scale.py --tasks 40 --programs 600   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soar.archive import ARCHIVE_SCHEMA, ProgramArchive  # noqa: E402
from soar.data import Task, load_split  # noqa: E402
from soar.hindsight import REFINE_SELECTIONS, SAMPLE_SELECTIONS  # noqa: E402

STAGES = ("write", "vote", "hindsight", "report")
ERRORS = ("timeout: 2.0 s of CPU", "exception: IndexError: list index out of range",
          "exception: NameError: name 'np' is not defined", "invalid_output: not a list of lists",
          "syntax_error: SyntaxError: invalid syntax (<program>, line 3)")
BODY = ("    h, w = len(grid), len(grid[0])\n", "    out = [row[:] for row in grid]\n",
        "    for i in range(h):\n        for j in range(w):\n            if grid[i][j] == {c}:\n"
        "                out[i][j] = {d}\n", "    import numpy as np\n    a = np.array(grid)\n",
        "    a = np.rot90(a, {c})\n", "    # find the largest object and recolour it\n",
        "    cols = sorted(set(v for row in grid for v in row))\n", "    return out\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=400, help="ARC-AGI-1 training tasks (at most 400)")
    p.add_argument("--programs", type=int, default=6000, help="programs per task (sampled + refined)")
    p.add_argument("--refine", type=float, default=0.5, help="fraction of them refined")
    p.add_argument("--per-round", type=int, default=8, help="programs of each task per archive part")
    p.add_argument("--mix", default="0.3,0.5,0.15,0.05", help="failed, wrong, partly correct, correct")
    p.add_argument("--distinct", type=float, default=0.25,
                   help="distinct behaviours per program of a task (the rest repeat one: searches repeat themselves)")
    p.add_argument("--dir", type=Path, help="run dir to build in (default: a temporary one, removed)")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--stage", help=argparse.SUPPRESS)  # run one stage in this process (the parent's children)
    p.add_argument("--every-selection", action="store_true",
                   help="hindsight: also time each selection on its own (7 more builds)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# -- the synthetic archive ------------------------------------------------------------------------------------------
def _perturb(grid: list[list[int]], rng: random.Random) -> list[list[int]]:
    out = [row[:] for row in grid]
    if rng.random() < 0.2:  # another shape
        return [row[: max(1, len(row) - 1)] for row in out] or [[0]]
    for _ in range(rng.randint(1, 4)):
        i, j = rng.randrange(len(out)), rng.randrange(len(out[0]))
        out[i][j] = (out[i][j] + rng.randint(1, 9)) % 10
    return out


def behaviours(task: Task, rng: random.Random, mix: list[float], n: int) -> list[dict]:
    """The task's `n` distinct program behaviours (predicted outputs, correctness, error), each with a draw weight
    so that the kinds come out in `mix` proportions."""
    train = [p.output for p in task.train]
    test = [p.output for p in task.test]
    counts = [max(1, round(n * share)) for share in mix]
    counts[0] = min(counts[0], len(ERRORS))  # failures repeat: their outputs are all missing
    kinds = []
    for _ in range(counts[0]):  # failures: every output missing
        kinds.append(("failed", [None] * len(train), [None] * len(test), rng.choice(ERRORS)))
    for _ in range(counts[1]):  # wrong everywhere
        kinds.append(("wrong", [_perturb(g, rng) for g in train], [_perturb(g, rng) for g in test], None))
    for _ in range(counts[2]):  # some train pairs right
        right = rng.sample(range(len(train)), rng.randint(1, max(1, len(train) - 1)))
        kinds.append(("partly", [g if i in right else _perturb(g, rng) for i, g in enumerate(train)],
                      [_perturb(g, rng) for g in test], None))
    for _ in range(counts[3]):  # fully correct (the same outputs; the code differs)
        kinds.append(("correct", train, test, None))
    out = []
    for kind, tr, te, error in kinds:
        share = mix[("failed", "wrong", "partly", "correct").index(kind)]
        n_same = sum(k[0] == kind for k in kinds)
        flags = [a == b for a, b in zip(tr, train)]
        out.append({"train": tr, "test": te, "error": error, "weight": share / n_same,
                    "correct_train": flags, "correct_test": [a == b for a, b in zip(te, test)],
                    "train_acc": sum(flags) / len(flags), "valid": error is None})
    return out


def _code(rng: random.Random, uid: str) -> str:
    lines = ["def transform(grid):\n"] + [rng.choice(BODY).format(c=rng.randint(0, 9), d=rng.randint(0, 9))
                                          for _ in range(rng.randint(4, 30))]
    return "".join(lines) + f"# {uid}\n"


class TaskPlan:
    """One task's programs, decided up front (behaviours, which program does what, refinement parents) and turned
    into archive rows a slice at a time, so the bench never holds the whole archive in memory."""

    def __init__(self, task: Task, n: int, refine: float, mix: list[float], distinct: float, seed: int) -> None:
        rng = random.Random(f"{seed}/{task.id}")
        kinds = behaviours(task, rng, mix, max(4, int(n * distinct)))
        self.task, self.seed, self.n = task, seed, n
        self.n_sample = n - int(n * refine)
        self.picks = rng.choices(range(len(kinds)), weights=[k["weight"] for k in kinds], k=n)
        useful = [i for i in range(self.n_sample) if kinds[self.picks[i]]["train_acc"] > 0] or [0]
        self.parents = [rng.choice(useful) if rng.random() < 0.8 else rng.randrange(self.n_sample)
                        for _ in range(n - self.n_sample)]
        grids = ARCHIVE_SCHEMA.field("predicted_train_output").type
        self.columns = {  # one entry per behaviour
            "predicted_train_output": pa.array([k["train"] for k in kinds], grids),
            "predicted_test_output": pa.array([k["test"] for k in kinds], grids),
            "correct_train_input": pa.array([k["correct_train"] for k in kinds], pa.list_(pa.bool_())),
            "correct_test_input": pa.array([k["correct_test"] for k in kinds], pa.list_(pa.bool_())),
            "train_acc": pa.array([k["train_acc"] for k in kinds], pa.float32()),
            "valid": pa.array([k["valid"] for k in kinds], pa.bool_()),
            "error": pa.array([k["error"] for k in kinds], pa.string()),
        }

    def _id(self, i: int) -> str:
        t = self.task.id
        return f"0/{t}/s{i:06d}" if i < self.n_sample else f"0/{t}/r0-{i - self.n_sample:06d}"

    def rows(self, start: int, stop: int) -> pa.Table:
        """Programs start..stop-1 of the task (sampled first, then refined) as archive rows."""
        rng = random.Random(f"{self.seed}/{self.task.id}/{start}")
        ids = [self._id(i) for i in range(start, stop)]
        code = [_code(rng, pid) for pid in ids]
        n = len(ids)
        index = pa.array(self.picks[start:stop], type=pa.int32())
        columns = {
            "program_id": pa.array(ids), "task_id": pa.array([self.task.id] * n),
            "parent_id": pa.array([None if i < self.n_sample else self._id(self.parents[i - self.n_sample])
                                   for i in range(start, stop)], type=pa.string()),
            "kind": pa.array(["sample" if i < self.n_sample else "refine" for i in range(start, stop)]),
            "iteration": pa.array([0] * n, pa.int32()), "model": pa.array(["synthetic"] * n), "code": pa.array(code),
            "text": pa.array([f"Here is the program.\n```python\n{c}```\nIt recolours the objects." for c in code]),
            **{key: column.take(index) for key, column in self.columns.items()},
            "prompt_tokens": pa.array([rng.randint(800, 4000) for _ in range(n)], pa.int64()),
            "gen_tokens": pa.array([len(c) // 3 for c in code], pa.int64()),
            "exec_cpu_s": pa.array([rng.uniform(0.001, 0.05) for _ in range(n)], pa.float64()),
        }
        return pa.table(columns)


def write_stage(run_dir: Path, tasks: dict[str, Task], args: argparse.Namespace) -> dict:
    mix = [float(x) for x in args.mix.split(",")]
    t0 = time.perf_counter()
    plans = [TaskPlan(t, args.programs, args.refine, mix, args.distinct, args.seed) for t in tasks.values()]
    built_s = time.perf_counter() - t0
    archive = ProgramArchive(run_dir / "programs.parquet")
    write_s, parts = 0.0, 0
    for start in range(0, args.programs, args.per_round):
        t0 = time.perf_counter()
        part = pa.concat_tables([p.rows(start, min(start + args.per_round, args.programs)) for p in plans])
        built_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        archive.append_table(part)
        write_s += time.perf_counter() - t0
        parts += 1
        if parts % 50 == 0:
            print(f"  write: {parts} parts, {start + args.per_round:,} programs per task", flush=True)
    (run_dir / "stage.yaml").write_text("data:\n  dataset: arc_agi_1\n  split: training\n  path: null\n")
    size = sum(p.stat().st_size for p in archive.parts())
    return {"built_s": built_s, "write_s": write_s, "parts": parts, "archive_gb": size / 2**30}


def vote_stage(run_dir: Path, tasks: dict[str, Task]) -> dict:
    from omegaconf import OmegaConf

    from soar.io import write_json
    from soar.runs import SearchRun
    from soar.scoring import summarize
    from soar.search.results import scored_kinds
    from soar.search.run import SCORED_COLUMNS

    t0 = time.perf_counter()
    run = SearchRun(run_dir)
    archive = ProgramArchive(run.archive)
    present = set(archive.column_names())
    table = archive.read([c for c in SCORED_COLUMNS if c in present])  # what the search job reads
    read_s = time.perf_counter() - t0
    scoring = OmegaConf.create({"attempts": 2, "vote": "weighted", "c": 1000.0})
    results, samples = scored_kinds(table, tasks, scoring, [None, "sample"])  # and the paper's sample-only figure
    metrics = {**summarize(results), "sample_only": summarize(samples)}
    write_json(run.metrics_file, metrics)
    write_json(run.tasks_file, {r.task_id: {k: v for k, v in vars(r).items() if k != "attempts"} for r in results})
    run.start()
    run.finish()
    return {"read_s": read_s, "vote_s": time.perf_counter() - t0, "vote_pass2": metrics["vote_pass2"]}


def hindsight_stage(run_dir: Path, tasks: dict[str, Task], every_selection: bool) -> dict:
    from soar.hindsight import HINDSIGHT_COLUMNS, build_examples

    t0 = time.perf_counter()
    table = ProgramArchive(run_dir / "programs.parquet").read(HINDSIGHT_COLUMNS)
    read_s = time.perf_counter() - t0
    base = {"per_task": 50, "refine_per_task": 50, "use_test": True, "shuffle_pairs": True}
    examples, _ = build_examples(table, tasks, {**base, "mode": "both"})  # the paper's joint data (defaults)
    out: dict = {"read_s": read_s, "hindsight_s": time.perf_counter() - t0, "both_examples": len(examples)}
    for mode, key, selections in (("sample", "sample_selection", SAMPLE_SELECTIONS),
                                  ("refine", "refine_selection", REFINE_SELECTIONS)) if every_selection else ():
        for selection in selections:
            t1 = time.perf_counter()
            examples, _ = build_examples(table, tasks, {**base, "mode": mode, key: selection})
            out[f"{mode}_{selection}_s"] = time.perf_counter() - t1
    if every_selection:
        out["hindsight_all_s"] = time.perf_counter() - t0
    return out


def report_stage(run_dir: Path) -> dict:
    from soar.report import build_report

    t0 = time.perf_counter()
    build_report([run_dir], run_dir / "report", max_tasks=6)
    return {"report_s": time.perf_counter() - t0}


def run_stage(name: str, run_dir: Path, tasks: dict[str, Task], args: argparse.Namespace) -> dict:
    if name == "write":
        return write_stage(run_dir, tasks, args)
    if name == "vote":
        return vote_stage(run_dir, tasks)
    if name == "hindsight":
        return hindsight_stage(run_dir, tasks, args.every_selection)
    return report_stage(run_dir)


def child(args: argparse.Namespace, name: str, run_dir: Path) -> dict:
    """Run one stage in a fresh process; its figures and peak RSS."""
    out = run_dir / f".{name}.json"
    cmd = [sys.executable, __file__, "--stage", name, "--dir", str(run_dir), "--tasks", str(args.tasks),
           "--programs", str(args.programs), "--refine", str(args.refine), "--per-round", str(args.per_round),
           "--mix", args.mix, "--distinct", str(args.distinct), "--seed", str(args.seed)]
    cmd += ["--every-selection"] if args.every_selection else []
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"stage {name} failed (status {status})")
    figures = json.loads(out.read_text())
    figures["peak_rss_gb"] = usage.ru_maxrss / 2**20  # KiB on Linux
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    split = load_split("arc_agi_1", "training")
    tasks = {tid: split[tid] for tid in sorted(split)[: args.tasks]}
    if args.stage:
        figures = run_stage(args.stage, args.dir, tasks, args)
        (args.dir / f".{args.stage}.json").write_text(json.dumps(figures))
        return
    run_dir = args.dir or Path(tempfile.mkdtemp(prefix="soar-scale-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    n = args.tasks * args.programs
    print(f"scale: {args.tasks} tasks x {args.programs} programs = {n:,} programs in {run_dir} "
          f"({os.cpu_count()} CPUs, {cpu})", flush=True)
    results = {}
    try:
        for name in args.stages.split(","):
            t0 = time.perf_counter()
            results[name] = child(args, name, run_dir)
            print(f"{name:10} {time.perf_counter() - t0:8.1f} s wall  peak {results[name]['peak_rss_gb']:.2f} GB  "
                  + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in results[name].items() if k != "peak_rss_gb"), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
    get = lambda stage, key: results.get(stage, {}).get(key, float("nan"))  # noqa: E731
    peak = max(r["peak_rss_gb"] for r in results.values())
    print(f"RESULT scale programs={n} write_s={get('write', 'write_s'):.1f} vote_s={get('vote', 'vote_s'):.1f} "
          f"hindsight_s={get('hindsight', 'hindsight_s'):.1f} report_s={get('report', 'report_s'):.1f} "
          f"peak_rss_gb={peak:.2f}")


if __name__ == "__main__":
    main()
