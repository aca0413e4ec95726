"""Walk an audio library: which files exist, and which of them changed since the last snapshot."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from audiosearch.models.audio import AUDIO_EXTENSIONS


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the library root, '/'-separated
    size: int
    mtime_ns: int


def scan_library(root: Path) -> tuple[list[FileEntry], list[tuple[str, str]]]:
    """Audio files under root (sorted), plus (path, reason) for entries that cannot be read at all.

    Symlinks are followed only when they resolve inside the library, so an index never points outside it.
    """
    root = root.resolve()
    found: list[FileEntry] = []
    problems: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            reason = _unreadable(full, root)
            if reason:
                problems.append((rel, reason))
                continue
            st = full.stat()
            found.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
    return found, problems


def _unreadable(full: Path, root: Path) -> str | None:
    if full.is_symlink():
        target = full.resolve()
        if not target.exists():
            return "broken symlink"
        if not target.is_relative_to(root):
            return "symlink points outside the library"
    if not os.access(full, os.R_OK):
        return "permission denied"
    return None


def file_sha1(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()
