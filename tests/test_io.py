"""soar.io: every atomic write leaves the old content or the new, never half, and no temporary file behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from soar.io import TMP_SUFFIX, atomic_file, replace_dir, write_json, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError, match="killed mid-write"), atomic_file(path) as f:
        f.write(b'{"a": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    write_text(path, "new")
    assert path.read_text() == "new" and not list(tmp_path.glob(f".*{TMP_SUFFIX}"))


def test_durable_write(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "part.bin", durable=True) as f:
        f.write(b"x" * 10)
    assert (tmp_path / "part.bin").read_bytes() == b"x" * 10


def test_replace_dir(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    with replace_dir(out) as tmp:
        (tmp / "config.json").write_text("1")
    with pytest.raises(RuntimeError, match="save failed"), replace_dir(out) as tmp:
        (tmp / "config.json").write_text("2")
        raise RuntimeError("save failed")
    assert (out / "config.json").read_text() == "1"  # the old directory survives a failed save
    with replace_dir(out) as tmp:
        (tmp / "config.json").write_text("3")
    assert (out / "config.json").read_text() == "3" and [p.name for p in tmp_path.iterdir()] == ["merged"]
    with pytest.raises(OSError), replace_dir(out, overwrite=False) as tmp:  # another process won the race
        (tmp / "config.json").write_text("4")
    assert (out / "config.json").read_text() == "3" and [p.name for p in tmp_path.iterdir()] == ["merged"]
