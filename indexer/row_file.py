"""The full vectors beside a compressed index (vectors.npy), read row by row for exact re-scoring."""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np


class RowFile:
    """A read-only (n, d) .npy matrix whose rows are read with pread when asked for, indexed like an array by
    ids or a slice. A query re-scores a few hundred rows scattered over the file: memory-mapped, the kernel's
    fault-around mapped 16 pages for each (even with MADV_RANDOM) and the service's RSS grew by 0.7 GB in 150
    queries over a 1M-window library; read this way the process keeps only what it asked for, and the hot
    rows stay in the page cache, shared and reclaimable."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, self.dtype = header(f)
            self.offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path}: not a C-ordered matrix")
        self.shape: tuple[int, int] = shape
        self.row_bytes = shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)
        self._closed = weakref.finalize(self, os.close, self._fd)  # a reader dropped on reload closes it too

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | int | np.ndarray | list[int]) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("RowFile slices take every row")
            return self._read(start, max(0, stop - start))
        if isinstance(key, int | np.integer):
            return self[np.array([key])][0]
        ids = np.asarray(key, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"row ids outside 0..{len(self) - 1}")
        out = np.empty((len(ids), self.shape[1]), self.dtype)
        for row, i in enumerate(ids.tolist()):  # one system call a row: no library reads scattered rows
            os.preadv(self._fd, [memoryview(out[row]).cast("B")], self.offset + i * self.row_bytes)
        return out

    def _read(self, start: int, rows: int) -> np.ndarray:
        out = np.empty((rows, self.shape[1]), self.dtype)
        if rows:
            os.preadv(self._fd, [memoryview(out).cast("B")], self.offset + start * self.row_bytes)
        return out

    def close(self) -> None:
        self._closed()
