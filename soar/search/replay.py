"""model=replay: evaluate every program of a file (JSONL or parquet) instead of an LLM's, batch by batch, into the
run's archive (resumable)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from hydra.utils import to_absolute_path
from omegaconf import DictConfig
from tqdm import tqdm

from soar.archive import ARCHIVE_COLUMNS, ProgramArchive, read_programs
from soar.data import Task
from soar.execution import Executor
from soar.search.evaluate import evaluate
from soar.tracking import Tracker


def load_replay_programs(path: Path, split: dict[str, Task], selected: set[str],
                         split_name: str | None = None) -> pa.Table:
    """The programs of `path` for the `selected` tasks, each with a stable `program_id`: the file's own when it has
    unique ones (another run's archive: its `kind` and `parent_id` lineage is kept too, so refinement data survives
    a replay), else the row number.

    Columns the archive computes itself (outputs, correctness, ...) are dropped; `model`, `text` and any other
    extra columns are kept. A file with a `split` column (programs of several splits, e.g. docs/learning_cpu/
    solved.jsonl) gives only its rows of `split_name`. Task ids the split does not know are an error that lists them.
    """
    table = read_programs(path)
    if split_name is not None and "split" in table.column_names:
        table = table.filter(pc.equal(table.column("split"), split_name))
    unknown = sorted(set(table.column("task_id").to_pylist()) - set(split))
    if unknown:
        shown = ", ".join(unknown[:20]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 20 else "")
        raise ValueError(f"{path}: task ids not in the selected data split: {shown}")
    names = table.column_names
    lineage = "program_id" in names and pc.count_distinct(table.column("program_id")).as_py() == table.num_rows
    kept = ("task_id", "code", "model", "text") + (("program_id", "parent_id", "kind") if lineage else ())
    table = table.drop_columns([c for c in names if c in ARCHIVE_COLUMNS and c not in kept])
    if not lineage:
        table = table.append_column("program_id", pa.array([f"replay-{i:09d}" for i in range(table.num_rows)]))
    return table.filter(pc.is_in(table.column("task_id"), pa.array(sorted(selected))))


def run_replay(
    cfg: DictConfig, split: dict[str, Task], tasks: dict[str, Task], archive: ProgramArchive, tracker: Tracker
) -> dict[str, Any]:
    """Execute the file's programs for `tasks` not yet in `archive`; returns throughput figures for the metrics.
    Without data.tasks / data.limit, `tasks` is the whole split and the file decides which tasks are run."""
    path = Path(to_absolute_path(cfg.model.programs))
    if not path.exists():
        raise FileNotFoundError(f"model.programs={cfg.model.programs}: no such file ({path})")
    table = load_replay_programs(path, split, set(tasks), cfg.data.split)
    done = archive.program_ids()
    todo = [p for p in table.to_pylist() if p["program_id"] not in done]
    ex_cfg = cfg.execution
    executed, seconds = 0, 0.0
    with (
        Executor.from_config(ex_cfg) as executor,
        tqdm(total=table.num_rows, initial=table.num_rows - len(todo), desc="replay", unit="prog") as bar,
    ):
        for start in range(0, len(todo), ex_cfg.batch_size):
            batch = todo[start : start + ex_cfg.batch_size]
            t0 = time.perf_counter()
            rows = evaluate(executor, tasks, batch, kind="replay", iteration=cfg.iteration,
                            model=cfg.model.name, progress=bar.update)
            seconds += time.perf_counter() - t0
            archive.append(rows)
            executed += len(rows)
            tracker.log({"search/programs_done": bar.n, "search/exec_programs_per_s": executed / seconds})
    return {
        "n_programs_in_file": table.num_rows,
        "n_programs_executed": executed,
        "n_programs_resumed": table.num_rows - len(todo),
        "exec_programs_per_s": executed / seconds if seconds else None,
    }
