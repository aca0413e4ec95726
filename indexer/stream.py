"""Embedding one long file block by block, with decoding overlapped in a thread.

Memory stays at a few blocks of audio plus the file's vectors (4 kB per window), so a recording of
many hours indexes like any other file; it is cached only once all its windows are embedded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

import numpy as np

from indexer.decode import Decoded, DecodeSettings, relative_reason
from models.audio_stream import stream_windows
from models.dual_encoder import DualEncoder
from models.errors import AudioSearchError

T = TypeVar("T")
_END = object()


def stream_vectors(
    d: Decoded, s: DecodeSettings, model: DualEncoder, batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(vectors, window starts, window ends) of one long file, or None with `d.error` set when a stretch of
    it cannot be decoded (corrupt, NaN): the file is skipped like any undecodable file."""
    chunks = stream_windows(d.job.full, s.sample_rate, s.window_s, s.hop_s, chunk_windows=batch)
    vecs, starts, ends = [], [], []
    try:
        for w in prefetch(chunks):
            vecs.append(model.encode_audio(w.waves, s.sample_rate, w.lengths, batch).numpy())
            starts.append(w.starts)
            ends.append(w.ends)
    except AudioSearchError as err:
        d.error = relative_reason(d.job, err)
        return None
    return np.concatenate(vecs), np.concatenate(starts), np.concatenate(ends)


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run `items` in a thread, at most `depth` ahead; its exceptions surface here, in order."""
    q: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():  # a consumer that gave up must not leave this thread blocked forever
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            put((_END, err))

    threading.Thread(target=produce, daemon=True, name="prefetch").start()
    try:
        while True:
            item, err = q.get()
            if item is _END:
                if err is not None:
                    raise err
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
