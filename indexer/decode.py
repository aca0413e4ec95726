"""Work done per file in worker processes: hash, probe, decode, cut into windows."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from audiosearch.core.errors import AudioDecodeError, AudioSearchError
from audiosearch.core.stderr_capture import Captured, captured_stderr
from audiosearch.indexer.decoded import Decoded, DecodeJob, DecodeSettings, relative_reason
from audiosearch.indexer.failures import recalled
from audiosearch.indexer.handoff import send
from audiosearch.indexer.peaks import file_peaks, wave_peaks
from audiosearch.indexer.scan import file_sha1
from audiosearch.models.audio import cut_windows, load_audio, probe

_DONE: frozenset[str] = frozenset()
_SETTINGS: DecodeSettings | None = None
_HANDOFF = ""
_FAILED: dict[str, tuple[str, str]] = {}  # sha1 -> (path, reason) of contents that failed before


def init_pool_worker(
    done: frozenset[str], settings: DecodeSettings, handoff: str, failed: dict[str, tuple[str, str]]
) -> None:
    """Initializer of a decode pool's worker processes: init_worker, and leave when the parent is gone."""
    init_worker(done, settings, handoff, failed)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """A pool worker whose parent was killed blocks on the call queue for ever (it holds both ends of that
    pipe, so it never reads EOF), keeping its memory: poll for the parent and leave with it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def init_worker(
    done: frozenset[str],
    settings: DecodeSettings,
    handoff: str = "",
    failed: dict[str, tuple[str, str]] | None = None,
) -> None:
    """Pool initializer: the set of content hashes already embedded, how to decode, where to put the
    windows for the parent (audiosearch.indexer.handoff; empty: return them with the result), and the
    contents that failed to decode before (not tried again)."""
    global _DONE, _SETTINGS, _HANDOFF, _FAILED
    _DONE, _SETTINGS, _HANDOFF, _FAILED = done, settings, handoff, failed or {}


def decode_job(job: DecodeJob) -> Decoded:
    assert _SETTINGS is not None, "init_worker not called"
    out = Decoded(job)
    said: Captured | None = None
    try:
        out.sha1 = job.sha1 or file_sha1(Path(job.full))
        if out.sha1 in _DONE:
            out.cached = True
            return out
        if recalled(out, _FAILED):
            return out
        with captured_stderr() as said:  # decoder libraries print from C: keep it for the reason, not the terminal
            _decode_into(out, Path(job.full), _SETTINGS)
        said = None  # decoded: what the decoder said along the way is dropped
        if _HANDOFF:
            send(out, _HANDOFF)
    except AudioDecodeError as err:  # the bytes themselves: whatever the settings, they fail again
        out.error, out.decode_failed = _told(job, str(err), said), True
    except AudioSearchError as err:
        out.error = _told(job, str(err), said)
    except (OSError, MemoryError) as err:
        out.error = _told(job, f"{job.path}: {type(err).__name__}: {err}", said)
    return out


def _told(job: DecodeJob, reason: str, said: Captured | None) -> str:
    """The reason, with what the decoder wrote to stderr while failing (if anything), named by library path."""
    noise = said.text() if said is not None else ""
    return relative_reason(job, f"{reason} (decoder said: {noise})" if noise else reason)


def _decode_into(out: Decoded, full: Path, s: DecodeSettings) -> None:
    info = probe(full)
    if info.duration > s.max_seconds:
        raise AudioSearchError(
            f"{full}: {info.duration / 3600:.1f} h is longer than the {s.max_seconds / 3600:.1f} h limit"
        )
    out.sample_rate, out.channels = info.sample_rate, info.channels
    if info.blockwise and info.duration > s.stream_over_s:
        out.stream, out.duration = True, info.duration
        out.peaks = file_peaks(full)  # one more pass over the file, block by block
        return
    wave = load_audio(full, s.sample_rate)
    win = cut_windows(wave, s.sample_rate, s.window_s, s.hop_s, s.min_tail_s)
    out.waves, out.starts, out.ends, out.lengths = win.waves, win.starts, win.ends, win.lengths
    out.duration = len(wave) / s.sample_rate
    out.peaks = wave_peaks(wave)
