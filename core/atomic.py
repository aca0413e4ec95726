"""Atomic file writes: the one place that does temp file + fsync + os.replace.

A reader (another process, or the next run after a crash) sees either the old file or the new one, never
half of one. Used for index snapshots, checkpoints, run state, job status, shard files and feature caches.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], object], durable: bool = True) -> Path:
    """Write `data` (bytes, text, or a function that writes into a binary file) to `path` atomically.

    `durable` also fsyncs the file and its folder, so the new content survives a power cut (snapshots,
    checkpoints); caches that can be recomputed skip it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file owner-only; indexes and models are read by other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | Path, data: Any, durable: bool = True) -> Path:
    return atomic_write(path, json.dumps(data, indent=2), durable)


@contextlib.contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """Fill a hidden temporary folder; on success it replaces `directory` whole (an earlier one is kept
    until the new one is in place), on failure it is removed and `directory` is untouched."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes the folder owner-only
        for f in tmp.rglob("*"):
            f.chmod(0o755 if f.is_dir() else 0o644)
        fsync_dir(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
        fsync_dir(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
