"""Where the Lightning Trainer runs: this process's rank, the cluster environment under SLURM, the strategy, the
precision for the hardware.

Decisions:
- Requeue belongs to submitit (hydra/launcher=slurm*): it requeues the job on timeout or preemption and the run
  resumes from checkpoints/last.ckpt. Lightning's SLURM auto-requeue is therefore off, or both would requeue.
- One SLURM task per device (hydra/launcher=slurm_ddp: srun started every rank): SLURMEnvironment. A single task
  (hydra/launcher=slurm, or a train stage of soar.loop): the job behaves as one machine and Lightning starts the
  other ranks itself if there are several devices (LightningEnvironment).
- Precision `auto` follows soar's one dtype decision (soar.hardware.choose_dtype).
"""
from __future__ import annotations

import os
import sys
from typing import Any

from omegaconf import DictConfig

from soar.hardware import Hardware, choose_dtype

PRECISIONS = ("auto", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")
LIGHTNING_PRECISION = {"bfloat16": "bf16-mixed", "float16": "16-mixed", "float32": "32-true"}


def global_rank() -> int:
    """This process's rank from the launcher's environment (0 before Lightning has spawned anything). LOCAL_RANK
    before SLURM_PROCID: ranks Lightning starts inside a one-task SLURM job inherit SLURM_PROCID=0."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def resolve_precision(precision: str, hardware: Hardware) -> str:
    """`auto`: the Lightning precision of soar's one dtype decision (bf16-mixed where bf16 is native, 16-mixed on a
    GPU without it, 32-true on a CPU without it); a bf16 precision forced on a CPU without native bf16 warns."""
    key = "finetune.trainer.precision"
    if precision == "auto":
        return LIGHTNING_PRECISION[choose_dtype("auto", hardware, key)]
    if precision.startswith("bf16"):
        choose_dtype("bfloat16", hardware, key)
    return precision


def strategy(value: Any) -> Any:
    """finetune.trainer.strategy: a name (auto, ddp, ...) or a {_target_: ...} strategy object with its options."""
    if isinstance(value, DictConfig) and "_target_" in value:
        from hydra.utils import instantiate

        return instantiate(value)
    return value


def cluster_plugins() -> list[Any]:
    """Lightning's cluster environment under SLURM (see the module doc); [] elsewhere (Lightning's own detection)."""
    from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment

    if not SLURMEnvironment.detect():
        return []
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return [SLURMEnvironment(auto_requeue=False)]
    return [LightningEnvironment()]


def check_launch(trainer: Any) -> None:
    """Several devices in ONE process started by submitit: Lightning would re-run submitit's entry point for each
    rank. SLURM must start one task per device instead."""
    from pytorch_lightning.plugins.environments import LightningEnvironment

    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    under_submitit = main is not None and str(main.name).startswith("submitit")
    env = getattr(trainer.strategy, "cluster_environment", None)
    if under_submitit and trainer.num_devices > 1 and isinstance(env, LightningEnvironment):
        raise ValueError(f"finetune.trainer.devices gives {trainer.num_devices} devices to one SLURM task: "
                         f"launch train.py with hydra/launcher=slurm_ddp (one task per GPU, "
                         f"hydra.launcher.gpus_per_node={trainer.num_devices}), or set finetune.trainer.devices=1")
