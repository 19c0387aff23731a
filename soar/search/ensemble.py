"""model=pool, an ensemble: one vote over the programs of several finished search runs pooled into one archive (the
paper's Table 6 ensemble: the searches of 5 models, 52.00% on ARC-test, oracle 57.25%).

Nothing is executed again: the source archives' outputs and correctness come from soar's executor on the same
tasks. Each source part becomes one part of this run's archive (atomic, so a killed pool resumes part by part),
with program and parent ids prefixed by the source's index (`<k>/<id>`) and a `pool_source` column naming the
part; the raw LLM answers (`text`) are left out. Every source must be a finished search (soar.runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hydra.utils import to_absolute_path
from omegaconf import DictConfig
from tqdm import tqdm

from soar.archive import ARCHIVE_COLUMNS, ProgramArchive, committed_parts
from soar.data import Task
from soar.runs import MARKER, SearchRun
from soar.tracking import Tracker


def source_parts(archives: list[str]) -> list[tuple[str, Path]]:
    """(pool_source name, part file) of every committed part of every source run dir, in order. Only finished
    searches are pooled: a running or killed one would give a vote that depends on when the pool ran."""
    parts = []
    for k, d in enumerate(archives):
        run = SearchRun(Path(to_absolute_path(str(d))))
        if not run.archive.is_dir():
            raise FileNotFoundError(f"model.archives[{k}]={d}: no programs.parquet (not a search run dir)")
        if not run.finished:
            raise ValueError(f"model.archives[{k}]={d}: the search is not finished (soar.runs: {MARKER}); "
                             "resume it (python search.py hydra.run.dir=<that dir> with its overrides) first")
        parts += [(f"{k}:{p.name}", p) for p in committed_parts(run.archive)]
    return parts


def prefixed(table: pa.Table, k: str) -> pa.Table:
    """Program and parent ids made unique across sources: `<k>/<id>`."""
    for col in ("program_id", "parent_id"):
        ids = pc.binary_join_element_wise(pa.scalar(f"{k}/"), table.column(col), "")
        table = table.set_column(table.schema.get_field_index(col), col, ids)
    return table


def run_ensemble(cfg: DictConfig, split: dict[str, Task], tasks: dict[str, Task], archive: ProgramArchive,
                 tracker: Tracker) -> dict[str, Any]:
    """Append the parts of `model.archives` not yet pooled into `archive`, restricted to `tasks`."""
    archives = list(cfg.model.archives or [])
    if not archives:
        raise ValueError("model.archives is empty: give the search run dirs to pool, e.g. "
                         "model.archives=[outputs/search/a,outputs/search/b]")
    parts = source_parts(archives)
    done = set()
    if archive.parts():
        table = archive.read(["pool_source"])
        done = set(table.column("pool_source").to_pylist())
    wanted = pa.array(sorted(tasks), pa.string())
    columns = [c for c in ARCHIVE_COLUMNS if c != "text"]
    pooled = 0
    for name, part in tqdm(parts, desc="pool", unit="part"):
        if name in done:
            continue
        table = pq.read_table(part, columns=columns)
        table = prefixed(table.filter(pc.is_in(table.column("task_id"), wanted)), name.split(":")[0])
        table = table.add_column(ARCHIVE_COLUMNS.index("text"), "text", pa.nulls(table.num_rows, pa.string()))
        archive.append_table(table.append_column("pool_source", pa.array([name] * table.num_rows, pa.string())))
        pooled += table.num_rows
        tracker.log({"search/programs_pooled": pooled})
    return {"pooled_archives": [str(a) for a in archives], "n_parts_pooled": len(parts)}
