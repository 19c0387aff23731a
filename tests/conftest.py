"""What every test file shares: the repository root, one real executor, and an environment without W&B or SLURM
settings.

Decisions:
- `ROOT` is imported (`from conftest import ROOT`): a constant, used at module level by many files.
- `executor` is one real `soar.execution.Executor` (1 worker, SOAR's 1 s per input) for the whole session: starting
  one costs a fork-server, and every user only runs quick programs on it. Tests of the executor itself
  (test_executor.py) build their own, with the settings they test.
- `WANDB_*` and `SLURM_*` variables are removed for the whole session, so that in-process code and the `search.py`,
  `train.py` and loop subprocesses the tests start see a plain machine: W&B in its default offline mode, no
  surrounding SLURM allocation.
- `@pytest.mark.slow` marks end-to-end runs (real models, search/train/loop jobs, multiruns) and anything over
  ~5 s: `pytest -m "not slow"` is the quick loop, `make test` runs everything.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from soar.execution import Executor

ROOT = Path(__file__).resolve().parents[1]
SCRUBBED = ("WANDB_", "SLURM_")


@pytest.fixture(scope="session", autouse=True)
def plain_environment() -> Iterator[None]:
    """No WANDB_* (the default offline mode applies) and no SLURM_* from a surrounding allocation."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(SCRUBBED)]:
            mp.delenv(key)
        yield


@pytest.fixture(scope="session")
def executor() -> Iterator[Executor]:
    with Executor(workers=1, timeout_s=1.0) as ex:
        yield ex
