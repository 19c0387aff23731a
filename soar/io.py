"""Atomic writes: a reader (or a resumed job) sees the old file or the new one, never half of one.

Every file or directory soar writes for another job to read goes through here: a temporary name in the same
directory (so `os.replace` is a rename on one file system), then `os.replace` into place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"  # temporary names are ".<name>.<pid>.tmp": a reader that lists a directory can skip them


@contextmanager
def atomic_file(path: Path, *, durable: bool = False) -> Iterator[IO[bytes]]:
    """A binary file that becomes `path` when the block ends without error (else it is deleted). The temporary name
    is unique per process, so concurrent writers race safely and the last one wins. `durable`: fsync the file and
    the rename, so a machine crash cannot lose or truncate it (archive parts)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_file(path) as f:
        f.write(text.encode())


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def replace_dir(out: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty temporary directory next to `out`; when the block ends without error it becomes `out`, else it
    is deleted and `out` is left as it was. An existing `out` is removed first, unless `overwrite` is false: then
    the final rename fails with OSError when another process has filled `out` meanwhile."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        if overwrite and out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
