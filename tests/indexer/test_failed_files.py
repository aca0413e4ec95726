"""Files that cannot be decoded: the decoder's own stderr goes into the skip reason, and a failure is
remembered by content hash so an unchanged rerun does not decode (or print) it again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from audiosearch.core.stderr_capture import captured_stderr
from audiosearch.indexer import IndexOptions, build_index
from tests.conftest import copy_clips

FAST = IndexOptions(workers=0, progress=False)
NOISE = "Illegal Audio-MPEG-Header"  # what libmpg123 (inside libsndfile) writes to fd 2 on this file


def corrupt_mp3(path: Path, seed: int = 2) -> Path:
    """An MPEG frame header followed by random bytes: mpg123 complains on fd 2, then gives up."""
    path.write_bytes(b"\xff\xfb\x90\x64" + np.random.default_rng(seed).bytes(20000))
    return path


def library(shared: Path, root: Path) -> Path:
    lib = root / "lib"
    copy_clips(shared, lib, {"rain": 2})
    corrupt_mp3(lib / "corrupt.mp3")
    return lib


def reasons(report) -> dict[str, str]:
    return {e["path"]: e["reason"] for e in report.errors}


def test_the_decoders_stderr_goes_into_the_reason_not_the_terminal(shared_data, tmp_path, lite_model, capfd) -> None:
    lib = library(shared_data, tmp_path)
    report = build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=1, progress=False))
    printed = capfd.readouterr().err
    assert NOISE not in printed
    reason = reasons(report)["corrupt.mp3"]
    assert reason.startswith("corrupt.mp3: cannot decode") and NOISE in reason and len(reason) < 600
    assert report.files == 2


def test_captured_stderr_keeps_distinct_lines_within_the_cap(capfd) -> None:
    with captured_stderr() as said:
        for _ in range(3):
            os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 20000.\nNote: Trying to resync...\n")
    os.write(2, b"after\n")
    assert said.text() == "Note: Illegal Audio-MPEG-Header 0x00000000 at offset 20000. | Note: Trying to resync..."
    assert said.text(max_chars=20) == "Note: Illegal Aud..."
    assert capfd.readouterr().err == "after\n"
