"""A bounded read (query by example): at most `max_seconds` are decoded, the rest of the file never is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.core.errors import AudioDecodeError, Cancelled, InvalidInputError
from audiosearch.models.audio_stream import ReadLimit, file_windows, stream_windows
from audiosearch.models.embedder import embed_files
from tests.indexer.test_long_files import real_recording


def silence(path: Path, seconds: int, sr: int = 48000, channels: int = 1, fmt: str = "FLAC") -> Path:
    """A long file that compresses to almost nothing: the shape of a decompression bomb."""
    block = np.zeros((sr * 60, channels), dtype=np.float32)
    subtype = "OPUS" if fmt == "OGG" else "PCM_16"
    with sf.SoundFile(str(path), "w", sr, channels, format=fmt, subtype=subtype) as f:
        for _ in range(seconds // 60):
            f.write(block)
    return path


@pytest.mark.slow
def test_two_hours_in_a_small_file_read_only_to_the_limit(tmp_path: Path) -> None:
    bomb = silence(tmp_path / "bomb.flac", 2 * 3600)
    assert bomb.stat().st_size < 2_000_000  # 2 h of 48 kHz audio in under 2 MB
    limit = ReadLimit(max_seconds=30)
    chunks = list(file_windows(bomb, 16000, 10.0, limit=limit))
    starts = np.concatenate([c.starts for c in chunks])
    assert list(starts) == [0.0, 10.0, 20.0]
    assert limit.seconds == 30.0 and limit.truncated


def test_nothing_past_the_limit_is_decoded(shared_data: Path, tmp_path: Path) -> None:
    """A NaN 45 s in fails a full read; a read limited to 30 s never reaches it."""
    path = real_recording(shared_data, 60.0, 16000, tmp_path / "nan.wav", subtype="FLOAT")
    wave, sr = sf.read(path, dtype="float32")
    wave[45 * sr] = np.nan
    sf.write(path, wave, sr, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="NaN"):
        list(file_windows(path, 16000, 10.0))
    limit = ReadLimit(max_seconds=30)
    chunks = list(file_windows(path, 16000, 10.0, limit=limit))
    assert sum(len(c.starts) for c in chunks) == 3 and limit.truncated
    # the same windows as the start of an unlimited read of the clean part
    clean = real_recording(shared_data, 30.0, 16000, tmp_path / "clean.wav", subtype="FLOAT")
    whole = np.concatenate([c.waves for c in file_windows(clean, 16000, 10.0)])
    np.testing.assert_array_equal(np.concatenate([c.waves for c in chunks]), whole)


def test_a_file_shorter_than_the_limit_is_read_whole(shared_data: Path, tmp_path: Path) -> None:
    path = real_recording(shared_data, 12.5, 44100, tmp_path / "short.wav")
    limit = ReadLimit(max_seconds=30)
    chunks = list(file_windows(path, 16000, 10.0, limit=limit))
    assert list(np.concatenate([c.ends for c in chunks])) == [10.0, 12.5]
    assert limit.seconds == 12.5 and not limit.truncated
    exact = ReadLimit(max_seconds=12.5)  # ends exactly at the limit: nothing more to read
    list(file_windows(path, 16000, 10.0, limit=exact))
    assert exact.seconds == 12.5 and not exact.truncated


@pytest.mark.slow
def test_opus_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    bomb = silence(tmp_path / "bomb.opus", 600, fmt="OGG")  # the case: 48 kHz silence in Ogg Opus
    limit = ReadLimit(max_seconds=20)
    n = sum(len(c.starts) for c in stream_windows(bomb, 16000, 10.0, limit=limit))
    assert n == 2 and limit.truncated and limit.seconds == pytest.approx(20.0)


def test_check_stops_the_read_between_blocks(tmp_path: Path) -> None:
    bomb = silence(tmp_path / "bomb.flac", 600, sr=8000)
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise Cancelled("the client disconnected")

    with pytest.raises(Cancelled):
        list(stream_windows(bomb, 16000, 10.0, block_s=30.0, limit=ReadLimit(check=check)))
    assert len(calls) == 3  # two 30 s blocks read, stopped before the third


def test_check_stops_embedding_at_the_next_batch(tmp_path: Path, lite_model) -> None:
    files = [silence(tmp_path / f"{i}.flac", 120, sr=8000) for i in range(3)]
    batches = []

    def check() -> None:
        batches.append(1)
        if len(batches) > 3:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        list(embed_files(lite_model, files, batch_size=4, check=check))
    # 36 windows are 9 batches (+3 file checks); it stopped at the 4th check, or one later: with overlap one
    # batch is already submitted while the previous one runs
    assert len(batches) in (4, 5)


def test_limit_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="positive"):
        ReadLimit(max_seconds=0)
