"""soar.tracking: run names and groups (one W&B group per sweep, explicit values win), run ids kept per run dir,
the tracker a config asks for, nested metrics as tracker keys. The W&B runs of real jobs are checked end to end
in test_search_replay.py, test_launcher.py and test_loop.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from soar.tracking import NullTracker, flatten, persisted_run_id, run_identity, sweep_group, tracking


def test_identity_outside_a_multirun_and_explicit_values_win(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"logger": {"name": "wandb", "group": None, "run_name": None}})
    assert run_identity(cfg, "search", tmp_path / "iter0") == ("search-iter0", None)
    cfg.logger.group, cfg.logger.run_name = "abl", "seed=1/iter0/search"
    assert run_identity(cfg, "search", tmp_path / "iter0") == ("seed=1/iter0/search", "abl")
    old = OmegaConf.create({"logger": {"name": "wandb", "group": None}})  # a config from before run_name
    assert run_identity(old, "train", tmp_path / "x") == ("train-x", None)
    assert sweep_group("search", "outputs/multirun/search/2025-01-31/12-00-00", "/w") == "search-2025-01-31-12-00-00"


def test_run_ids_persist_per_dir_and_differ_across_dirs(tmp_path: Path) -> None:
    dirs = [tmp_path / str(i) for i in range(200)]
    ids = []
    for d in dirs:
        d.mkdir()
        ids.append(persisted_run_id(d))
    assert len(set(ids)) == len(ids) and all(len(i) == 16 for i in ids)
    assert persisted_run_id(dirs[0]) == ids[0]  # a resumed job keeps its run
    (dirs[1] / "wandb_run_id").write_text("abcd1234\n")  # ids written by earlier versions are kept
    assert persisted_run_id(dirs[1]) == "abcd1234"


def test_logger_none_tracks_nothing_and_an_unknown_logger_is_named(tmp_path: Path) -> None:
    with tracking(OmegaConf.create({"logger": {"name": "none"}}), "search", tmp_path) as tracker:
        assert isinstance(tracker, NullTracker)
    unknown = OmegaConf.create({"logger": {"name": "mlflow"}})
    with pytest.raises(ValueError, match="logger='mlflow': expected 'wandb' or 'none'"), tracking(unknown, "x", tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []  # no run id, no W&B dir


def test_nested_metrics_become_prefixed_keys() -> None:
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": [3]}}}, "train") == {
        "train/a": 1, "train/b/c": 2, "train/b/d/e": [3]}
    assert flatten({}, "search") == {}
