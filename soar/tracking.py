"""Experiment tracking: one small interface over W&B (or nothing), used by every job.

A run is always finished, even when the job raises, so a Hydra multirun goes on to the next job.
The W&B run id is kept in the run directory, so a resumed or requeued job continues the same W&B run.

Run identity (``run_identity``): the name is ``logger.run_name`` when set, else ``<job_type>-<label>`` where the
label is the job's overrides (Hydra's ``override_dirname``, e.g. ``seed=1,search.refine.selector=greedy``) in a
multirun and the run dir's name otherwise; the group is ``logger.group`` when set, else, in a multirun, one name
for every job of the sweep (``<config name>-<sweep dir>``, e.g. ``search-2025-01-31-12-00-00``). Explicit values
win: soar.loop passes both to the stages it starts.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from soar.io import write_text


class Tracker(Protocol):
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...
    def summary(self, metrics: Mapping[str, Any]) -> None: ...
    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...
    def artifact(self, name: str, kind: str, path: Path) -> None: ...


class NullTracker:
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, metrics: Mapping[str, Any]) -> None:
        pass

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        pass

    def artifact(self, name: str, kind: str, path: Path) -> None:
        pass


class WandbTracker:
    def __init__(self, run: Any) -> None:
        self.run = run

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(metrics))

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        import wandb

        self.run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def artifact(self, name: str, kind: str, path: Path) -> None:
        """Log ``path`` by reference (large archives stay where they are) as ``<name>-<run id>``: unique per run,
        so the stages of different loops and sweeps never become versions of one artifact."""
        import wandb

        art = wandb.Artifact(f"{name}-{self.run.id}", type=kind)
        art.add_reference(path.resolve().as_uri(), checksum=False)
        self.run.log_artifact(art)


MAX_GROUP = 128  # W&B's limit on a group name


def _multirun_job() -> Any:
    """Hydra's config of the running job when it is a job of a multirun (any launcher), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover
        return None
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc if hc.mode == RunMode.MULTIRUN else None


def sweep_group(config_name: str, sweep_dir: str | Path, cwd: str | Path | None = None) -> str:
    """One W&B group per sweep: the config name and the sweep dir's last two parts (the default sweep dirs end
    in <date>/<time>), e.g. search-2025-01-31-12-00-00."""
    path = Path(os.path.abspath(Path(cwd or os.getcwd()) / sweep_dir))  # relative to where the sweep started
    parts = [p for p in path.parts[-2:] if p != path.anchor]
    return "-".join([config_name, *parts])[:MAX_GROUP]


def run_identity(cfg: DictConfig, job_type: str, run_dir: Path) -> tuple[str, str | None]:
    """(W&B run name, W&B group) of a job: see the module docstring."""
    name = OmegaConf.select(cfg, "logger.run_name", default=None)
    group = OmegaConf.select(cfg, "logger.group", default=None)
    hc = _multirun_job() if name is None or group is None else None
    if name is None:
        label = (hc.job.override_dirname if hc is not None else "") or Path(run_dir).name
        name = f"{job_type}-{label}"
    if group is None and hc is not None:
        group = sweep_group(hc.job.config_name, hc.sweep.dir, hc.runtime.cwd)
    return str(name), None if group is None else str(group)


def new_run_id() -> str:
    """16 random hex digits (64 bits): no two runs of a project share an id, whatever the number of sweeps."""
    return secrets.token_hex(8)


def persisted_run_id(run_dir: Path) -> str:
    """The W&B run id of the job in `run_dir`: read from <run_dir>/wandb_run_id, created there the first time, so
    a resumed or requeued job continues the same run. Written atomically (a job killed mid-write leaves no
    empty id behind)."""
    id_file = Path(run_dir) / "wandb_run_id"
    if id_file.exists() and (run_id := id_file.read_text().strip()):
        return run_id
    run_id = new_run_id()
    write_text(id_file, run_id)
    return run_id


@contextmanager
def tracking(cfg: DictConfig, job_type: str, run_dir: Path) -> Iterator[Tracker]:
    """Start the configured tracker for one job in ``run_dir``; finish it whatever happens."""
    if cfg.logger.name == "none":
        yield NullTracker()
        return
    if cfg.logger.name != "wandb":
        raise ValueError(f"logger={cfg.logger.name!r}: expected 'wandb' or 'none'")

    import wandb

    name, group = run_identity(cfg, job_type, run_dir)
    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=group,
        tags=list(cfg.logger.tags),
        job_type=job_type,
        name=name,
        id=persisted_run_id(run_dir),
        resume="allow",
        mode=cfg.logger.mode,
        dir=str(run_dir),
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        settings=wandb.Settings(silent=True, console="off"),
    )
    try:
        yield WandbTracker(run)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()


def flatten(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """{"a": 1, "b": {"c": 2}} -> {"prefix/a": 1, "prefix/b/c": 2}: nested metrics as tracker keys."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}/{k}"))
        else:
            out[f"{prefix}/{k}"] = v
    return out
