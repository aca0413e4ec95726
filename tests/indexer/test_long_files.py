"""Long recordings: read block by block with the same windows as a whole-file decode, memory bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosearch.indexer import Filters, IndexOptions, Searcher, build_index
from audiosearch.models.audio import cut_windows, load_audio
from audiosearch.models.audio_stream import stream_windows
from tests.conftest import REPO, copy_clips
from tests.indexer.test_build import assert_consistent


def real_recording(shared: Path, seconds: float, sr: int, dest: Path, subtype: str = "PCM_16") -> Path:
    """A long file made of real ESC-10 clips back to back (dog barks, rain, rooster), written in blocks."""
    clips = [
        load_audio(p, sr)
        for label in ("dog_bark", "rain", "rooster")
        for p in sorted((shared / "esc10" / label).glob("*.ogg"))[:4]
    ]
    loop = np.concatenate(clips)
    total = int(seconds * sr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(dest), "w", sr, 1, subtype=subtype) as f:
        for at in range(0, total, len(loop)):
            f.write(loop[: min(len(loop), total - at)])
    return dest


@pytest.mark.parametrize(("sr", "seconds", "hop"), [(44100, 95.3, None), (16000, 61.0, 4.0), (22050, 6.0, None)])
def test_streamed_windows_equal_a_whole_file_decode(shared_data, tmp_path, sr, seconds, hop) -> None:
    path = real_recording(shared_data, seconds, sr, tmp_path / "long.wav")
    whole = cut_windows(load_audio(path, 16000), 16000, 10.0, hop)
    chunks = list(stream_windows(path, 16000, 10.0, hop, chunk_windows=3, block_s=7.3))
    assert max(len(c.starts) for c in chunks) <= 3
    np.testing.assert_array_equal(np.concatenate([c.starts for c in chunks]), whole.starts)
    np.testing.assert_array_equal(np.concatenate([c.lengths for c in chunks]), whole.lengths)
    np.testing.assert_allclose(np.concatenate([c.waves for c in chunks]), whole.waves, atol=1e-6)


def test_a_bad_stretch_deep_in_a_long_file_skips_only_that_file(shared_data, tmp_path, lite_model) -> None:
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 2})
    bad = real_recording(shared_data, 60.0, 16000, lib / "long_nan.wav", subtype="FLOAT")
    wave, sr = sf.read(bad, dtype="float32")
    wave[45 * sr] = np.nan
    sf.write(bad, wave, sr, subtype="FLOAT")
    real_recording(shared_data, 40.0, 16000, lib / "long_ok.wav")
    report = build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False, stream_over_s=20))
    assert [e["path"] for e in report.errors] == ["long_nan.wav"]
    assert "NaN" in report.errors[0]["reason"] and "at 30 s" in report.errors[0]["reason"]  # the 30 s block
    assert report.files == 3 and report.windows == 2 + 4
    s = assert_consistent(tmp_path / "idx")
    long_ok = next(c for c in map(s.clip, range(1, 4)) if c.path == "long_ok.wav")
    assert long_ok.duration == pytest.approx(40.0)


def test_files_over_the_length_limit_are_refused_with_the_reason(shared_data, tmp_path, lite_model) -> None:
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"rain": 1})
    real_recording(shared_data, 30.0, 16000, lib / "too_long.wav")
    report = build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False, max_seconds=20))
    assert report.files == 1 and "longer than" in report.errors[0]["reason"]


def _index_in_child(lib: Path, idx: Path) -> dict:
    """Index in a fresh process and report its peak RSS (ru_maxrss of that process alone)."""
    code = (
        "import json, resource; from audiosearch.core.threads import configure_threads; configure_threads();"
        "from audiosearch.indexer import IndexOptions, build_index; from audiosearch.models import load_model;"
        f"r = build_index({str(lib)!r}, {str(idx)!r}, load_model('lite'), IndexOptions(progress=False));"
        "print(json.dumps({'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'windows': r.windows, 'files': r.files, 'errors': r.errors}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_three_hour_recording_indexes_in_bounded_memory(shared_data, tmp_path) -> None:
    # The baseline is a one-hour file, streamed too, in the same full model batches: the model's working set
    # for 32 windows (a few hundred MB) is the same, so any growth would come from the length of the recording.
    # Decoded whole, the two extra hours would add about 0.9 GB (waveform at 16 kHz plus its windows).
    short = tmp_path / "short"
    copy_clips(shared_data, short, {"dog_bark": 2})
    real_recording(shared_data, 3600, 8000, short / "one_hour.wav")
    base = _index_in_child(short, tmp_path / "idx_short")
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 2})
    # 8 kHz so the file is small on disk; decoded whole at 16 kHz it would take 0.7 GB, its windows as much.
    real_recording(shared_data, 3 * 3600, 8000, lib / "three_hours.wav")
    run = _index_in_child(lib, tmp_path / "idx")
    assert run["errors"] == [] and run["files"] == 3
    assert run["windows"] == 2 + 3 * 360
    grown = run["rss_mb"] - base["rss_mb"]
    assert grown < 150, f"peak RSS grew by {grown:.0f} MB from 1 h to 3 h ({base['rss_mb']:.0f} MB)"
    s = Searcher(tmp_path / "idx")
    (long_id,) = [i for i in range(1, 4) if s.clip(i).path == "three_hours.wav"]
    last = max(w.end for w in s.reader.windows(list(range(s.index.ntotal)), Filters()).values() if w.file_id == long_id)
    assert last == pytest.approx(3 * 3600, abs=0.01)


def test_a_copy_of_a_long_file_that_fails_part_way_is_skipped_too(shared_data, tmp_path, lite_model) -> None:
    lib, idx = tmp_path / "lib", tmp_path / "idx"
    copy_clips(shared_data, lib, {"dog_bark": 2})
    bad = real_recording(shared_data, 60.0, 16000, lib / "long_a.wav", subtype="FLOAT")
    wave, sr = sf.read(bad, dtype="float32")
    wave[45 * sr] = np.nan  # past the first 30 s block: the read starts, then fails
    sf.write(bad, wave, sr, subtype="FLOAT")
    (lib / "long_b.wav").write_bytes(bad.read_bytes())
    opts = IndexOptions(workers=0, progress=False, stream_over_s=20)
    runs = [build_index(lib, idx, lite_model, opts) for _ in range(2)]  # the rerun too: nothing breaks
    for report in runs:
        reasons = {e["path"]: e["reason"] for e in report.errors}
        assert sorted(reasons) == ["long_a.wav", "long_b.wav"] and report.files == 2 and report.windows == 2
        assert reasons["long_a.wav"] == "long_a.wav at 30 s: contains NaN or infinite samples"
        assert reasons["long_b.wav"].startswith("long_b.wav at 30 s: contains NaN or infinite samples")
    assert runs[0].errors[1]["reason"].endswith("(the same content as long_a.wav)")
    assert_consistent(idx)
