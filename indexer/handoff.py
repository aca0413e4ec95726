"""Decoded windows from pool workers to the parent through files, not the result pipe.

A process pool's results travel through one pipe that the parent drains and unpickles alone: about 1 GB/s,
which capped a 16-core GPU host at ~750 10 s clips/s (1.28 MB of float32 each) whatever the codec. A file
written into the page cache and read back once is about three times faster, and is deleted before it
would ever be flushed to disk. Shared memory would be as fast, but /dev/shm is 64 MB in a default
container and overrunning it kills the worker with SIGBUS; a full disk here only sends the windows
through the pipe instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audiosearch.core.errors import AudioDecodeError
from audiosearch.indexer.decoded import Decoded


@contextlib.contextmanager
def handoff_folder(path: Path) -> Iterator[Path]:
    """An empty folder for one run; files left by a killed run are removed at the next start."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def send(d: Decoded, folder: str) -> Decoded:
    """In a worker: move d.waves into a file in `folder`; d then carries the file's name and shape."""
    if d.waves is None or d.waves.size == 0:
        return d
    name = ""
    try:
        fd, name = tempfile.mkstemp(dir=folder, suffix=".f32")
        with os.fdopen(fd, "wb") as f:
            d.waves.tofile(f)
    except OSError:  # e.g. a full disk, or the folder gone: the pipe still works
        if name:
            Path(name).unlink(missing_ok=True)
        return d
    d.handoff, d.shape, d.waves = name, d.waves.shape, None
    return d


def receive(d: Decoded) -> Decoded:
    """In the parent: read back and delete what `send` wrote."""
    if d.handoff is None:
        return d
    path, d.handoff = Path(d.handoff), None
    try:
        d.waves = np.fromfile(path, dtype=np.float32).reshape(d.shape)
    except (OSError, ValueError) as err:
        d.error = str(AudioDecodeError(f"{d.job.path}: decoded windows lost in hand-off ({err})"))
    finally:
        path.unlink(missing_ok=True)
    return d
