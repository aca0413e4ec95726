"""Files that cannot be decoded: the decoder's own stderr goes into the skip reason, and a failure is
remembered by content hash so an unchanged rerun does not decode (or print) it again."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.core.stderr_capture import captured_stderr
from audiosearch.indexer import IndexOptions, build_index
from tests.conftest import CLI, REPO, copy_clips

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


def swap_for_audio(path: Path) -> None:
    """Make the file decodable (a WAV inside) while keeping its size and mtime: only a decode can tell."""
    stat = path.stat()
    samples = (stat.st_size - 44) // 2  # a 16-bit mono WAV: 44 header bytes, then 2 bytes a sample
    noise = np.random.default_rng(0).standard_normal(samples).astype("float32") * 0.1
    sf.write(path, noise, 16000, subtype="PCM_16", format="WAV")
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


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


def test_a_failed_file_is_not_decoded_again_until_it_changes_or_a_retry(shared_data, tmp_path, lite_model, capfd):
    lib, idx = library(shared_data, tmp_path), tmp_path / "idx"
    first = reasons(build_index(lib, idx, lite_model, FAST))["corrupt.mp3"]
    assert NOISE in first
    swap_for_audio(lib / "corrupt.mp3")
    capfd.readouterr()
    # another window too: a decode failure does not depend on the model's settings
    again = build_index(lib, idx, lite_model, dataclasses.replace(FAST, window_s=5.0))
    assert reasons(again) == {"corrupt.mp3": first} and again.files == 2 and again.skipped == 1
    assert NOISE not in capfd.readouterr().err
    logged = [json.loads(line) for line in (idx / "errors.jsonl").read_text().splitlines()]
    assert [e["reason"] for e in logged] == [first, first]
    retried = build_index(lib, idx, lite_model, dataclasses.replace(FAST, retry_failed=True))
    assert retried.errors == [] and retried.files == 3 and retried.embedded == 1


def test_a_failed_file_with_new_contents_is_tried_again(shared_data, tmp_path, lite_model) -> None:
    lib, idx = library(shared_data, tmp_path), tmp_path / "idx"
    assert "corrupt.mp3" in reasons(build_index(lib, idx, lite_model, FAST))
    sf.write(lib / "corrupt.mp3", np.zeros(16000, "float32") + 0.1, 16000, format="WAV")
    report = build_index(lib, idx, lite_model, FAST)
    assert report.errors == [] and report.files == 3


@pytest.mark.slow
def test_the_cli_retries_failed_files_when_asked(shared_data, tmp_path, lite_model) -> None:
    lib, idx = library(shared_data, tmp_path), tmp_path / "idx"
    build_index(lib, idx, lite_model, FAST)
    swap_for_audio(lib / "corrupt.mp3")
    cmd = [*CLI, "index", str(lib), "--index", str(idx), "--quiet"]
    plain = subprocess.run([*cmd, "--workers", "0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0 and "indexed 2 files" in plain.stdout and "skipped corrupt.mp3" in plain.stderr
    retry = subprocess.run(
        [*cmd, "--workers", "0", "--retry-failed"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert retry.returncode == 0 and "indexed 3 files" in retry.stdout and "skipped" not in retry.stderr


@pytest.mark.slow
def test_a_decode_without_fd_2_still_works(shared_data, tmp_path, lite_model) -> None:
    """A daemon may run with stderr closed: capturing it must not make every file fail."""
    lib = library(shared_data, tmp_path)
    code = (
        "import os, sys; os.close(2); sys.stderr = None;"
        "from audiosearch.indexer import IndexOptions, build_index; from audiosearch.models import load_encoder;"
        f"r = build_index({str(lib)!r}, {str(tmp_path / 'idx')!r}, load_encoder('lite'),"
        " IndexOptions(workers=0, progress=False)); print(r.files, [e['path'] for e in r.errors])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.stdout.strip().splitlines()[-1:] == ["2 ['corrupt.mp3']"], out.stderr[-2000:]
