"""Experiment tracking: one small interface over W&B (or nothing), used by every job.

A run is always finished, even when the job raises, so a Hydra multirun goes on to the next job.
The W&B run id is kept in the run directory, so a resumed job continues the same W&B run.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf


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
        """Log ``path`` by reference: large archives stay where they are."""
        import wandb

        art = wandb.Artifact(name, type=kind)
        art.add_reference(path.resolve().as_uri(), checksum=False)
        self.run.log_artifact(art)


@contextmanager
def tracking(cfg: DictConfig, job_type: str, run_dir: Path) -> Iterator[Tracker]:
    """Start the configured tracker for one job in ``run_dir``; finish it whatever happens."""
    if cfg.logger.name == "none":
        yield NullTracker()
        return
    if cfg.logger.name != "wandb":
        raise ValueError(f"logger={cfg.logger.name!r}: expected 'wandb' or 'none'")

    import wandb

    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
    id_file.write_text(run_id)
    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        tags=list(cfg.logger.tags),
        job_type=job_type,
        name=f"{job_type}-{run_dir.name}",
        id=run_id,
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
