"""The train job's config checks: every bad value fails before any model or archive is loaded, and every message
names the full key (finetune.<key>).

Decisions:
- Two checks: `check_finetune_config`, the recipe (LoRA, batch, optimizer, dtypes, trainer), and
  `check_data_config`, what the data build reads (finetune.data, finetune.archives). The train job runs both before
  it builds its data (a resumed job trains on its saved examples: only the first); the recipe runs the first itself
  (soar.finetune.recipe.finetune is also called directly).
- The allowed values come from their owners (soar.hindsight, soar.finetune.{lora,module,cluster}); heavy modules
  are imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from soar.runs import MARKER, SearchRun


def _at_least(ft: DictConfig, key: str, minimum: float = 1) -> None:
    value = OmegaConf.select(ft, key)
    if not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"finetune.{key}={value!r}: must be a number >= {minimum}")


def _one_of(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r}: allowed: {', '.join(map(str, allowed))}")


def check_finetune_config(ft: DictConfig) -> None:
    """The recipe (the finetune node without its data and archives)."""
    from soar.finetune.cluster import PRECISIONS
    from soar.finetune.lora import DTYPES, check_quantization
    from soar.finetune.module import OPTIMIZERS

    for key in ("max_seq_len", "epochs", "lora.r", "batch.size", "batch.micro_size"):
        _at_least(ft, key)
    for key in ("optim.lr", "optim.weight_decay", "lora.alpha"):
        _at_least(ft, key, 0)
    for key in ("lora.dropout", "optim.warmup_ratio"):
        if not 0 <= OmegaConf.select(ft, key) < 1:
            raise ValueError(f"finetune.{key}={OmegaConf.select(ft, key)}: must be in [0, 1)")
    if ft.batch.size % ft.batch.micro_size:
        raise ValueError(f"finetune.batch.size={ft.batch.size} (examples per optimizer step) must be a multiple of "
                         f"finetune.batch.micro_size={ft.batch.micro_size} (x the number of devices)")
    for key in ("batch.group_size", "checkpoint.every_n_steps"):
        if OmegaConf.select(ft, key) is not None:
            _at_least(ft, key)
    _one_of("finetune.optim.name", ft.optim.name, OPTIMIZERS)
    if not list(ft.lora.target_modules):
        raise ValueError("finetune.lora.target_modules is empty")
    for key in ("load_dtype", "save_dtype"):
        _one_of(f"finetune.{key}", ft[key], list(DTYPES))
    _one_of("finetune.trainer.precision", str(ft.trainer.precision), PRECISIONS)
    check_quantization(ft.quantization)
    if ft.optim.name == "adamw_8bit":
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("finetune.optim.name=adamw_8bit needs bitsandbytes: pip install bitsandbytes")


def check_data_config(cfg: DictConfig) -> None:
    """What the data build reads: finetune.data (the hindsight examples to build: soar.hindsight.build_examples,
    use_test per archive) and finetune.archives (at least one, each a finished search run dir: soar.runs)."""
    from soar.hindsight import data_options

    data = cfg.finetune.data
    data_options(data, prefix="finetune.data.")
    if not (isinstance(data.use_test, bool) or data.use_test == "auto"):
        raise ValueError(f"finetune.data.use_test={data.use_test!r}: allowed: auto (ground truth only from "
                         "training-split archives), true (always, with a warning), false (never)")
    archives = list(cfg.finetune.archives or [])
    if not archives:
        raise ValueError("finetune.archives is empty: give the search run dir(s) whose programs to learn from, "
                         "e.g. finetune.archives=[outputs/search/2025-01-01/12-00-00]")
    for d in archives:
        run = SearchRun(Path(d))
        if not run.archive.exists():
            raise FileNotFoundError(f"finetune.archives: {d} has no programs.parquet (not a search run dir)")
        if not run.finished:
            raise ValueError(f"finetune.archives: {d} is a search that is not finished (soar.runs: {MARKER}); "
                             "resume it first (python search.py hydra.run.dir=<that dir> with its overrides)")
