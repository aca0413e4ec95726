"""What C libraries write to file descriptor 2 (libmpg123's "Note: Illegal Audio-MPEG-Header ...", libsndfile),
caught so it can go into an error message instead of the terminal. Redirecting sys.stderr does not reach it.

fd 2 is the whole process's: use it where nothing else prints meanwhile (decode workers, one file at a time).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

MAX_CHARS = 300  # a reason stays one readable line, however much a decoder repeats itself

_sink: tuple[int, BinaryIO] | None = None  # (pid, file): one reused file per process, no open per decode


class Captured:
    """What was written to fd 2 inside the block; readable until the next capture in this process."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self._sink = sink  # None: nothing was captured (fd 2 was closed)

    def text(self, max_chars: int = MAX_CHARS) -> str:
        """The distinct lines, in order, joined with ' | ' and cut at `max_chars` (read only when needed)."""
        if self._sink is None:
            return ""
        os.lseek(self._sink.fileno(), 0, os.SEEK_SET)
        raw = os.read(self._sink.fileno(), 16 * max_chars).decode("utf-8", errors="replace")
        lines = dict.fromkeys(line.strip() for line in raw.splitlines() if line.strip())
        joined = " | ".join(lines)
        return joined if len(joined) <= max_chars else joined[: max_chars - 3] + "..."


@contextlib.contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Point fd 2 at a scratch file for the block, then back; costs a few system calls."""
    sink = _scratch()
    fd = sink.fileno()
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    if sys.stderr is not None:
        sys.stderr.flush()  # Python's own buffered text belongs before the redirection
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon closed it): nothing to catch, and the decode must not fail for it
        yield Captured(None)
        return
    os.dup2(fd, 2)
    try:
        yield Captured(sink)
    finally:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _scratch() -> BinaryIO:
    global _sink
    if _sink is None or _sink[0] != os.getpid():  # a forked child must not share its parent's file offset
        _sink = (os.getpid(), tempfile.TemporaryFile())  # noqa: SIM115 - kept open for the process's life
    return _sink[1]
