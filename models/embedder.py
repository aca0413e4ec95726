"""The one embedding pipeline: (key, windows) items in, (key, vectors) out, in order, in full model batches.

Every place that turns audio into vectors goes through `Embedder.embed`: the local indexer, Ray shards,
training feature caches, evaluation and query by example. An item's windows come as an iterable of `Windows`
chunks: one chunk for a decoded file, many for a long file read block by block (models.audio_stream), so long
files share the batches of short ones and memory stays at a few blocks. Windows of consecutive items are
packed into batches of `batch_size`; with `overlap`, one batch runs in a helper thread while the caller's
thread gathers (decodes) the next, which is where indexing gets its speed (torch and onnxruntime release the
GIL). An item whose windows fail to decode part-way (a corrupt stretch, NaN) comes back with its error and
no vectors; the other items of its batches are unaffected.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiosearch.core.errors import AudioSearchError
from audiosearch.models.aggregate import aggregate, min_tail_seconds, normalizes_windows
from audiosearch.models.audio import Windows

log = logging.getLogger(__name__)

# (waves (B, T) float32, real lengths (B,)) -> (B, D) float32: an encoder's encode_audio at its own rate,
# or a tower's features for training caches
EncodeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Item = tuple[Any, Iterable[Windows] | None]  # None: nothing to embed, passed through in order


@dataclass
class Embedded:
    key: Any
    vectors: np.ndarray | None = None  # (n, D); None for a pass-through item or an error
    starts: np.ndarray | None = None  # (n,) seconds
    ends: np.ndarray | None = None
    error: str | None = None


@dataclass
class _Open:
    key: Any
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = field(default_factory=list)  # starts, ends, vecs
    owed: int = 0  # windows sent to batches whose vectors have not come back yet
    filled: int = 0  # parts whose vectors came back (batches come back in order, so parts fill in order)
    complete: bool = False  # all its windows were read
    error: str | None = None


# an item's vectors, starts, ends -> the ones it keeps (audiosearch.models.aggregate: a clip as a whole)
FinishFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class Embedder:
    def __init__(
        self, encode: EncodeFn, batch_size: int = 32, overlap: bool = True, finish: FinishFn | None = None
    ) -> None:
        self.encode, self.batch_size, self.overlap = encode, max(1, batch_size), overlap
        self.finish = finish
        self.batches = 0
        self.seconds = 0.0  # in encode calls

    def embed(self, items: Iterable[Item]) -> Iterator[Embedded]:
        """Results in the items' order; each item's vectors follow its windows' order."""
        run = _Run(self)
        try:
            for key, windows in items:
                run.open(key, windows)
                yield from run.ready()
            run.flush()
            yield from run.ready()
        finally:
            run.close()


class _Run:
    """The state of one `embed` call: open items, the batch being gathered and the one in flight."""

    def __init__(self, embedder: Embedder) -> None:
        self.e = embedder
        self.items: deque[_Open] = deque()
        self.pending: list[tuple[_Open, Windows]] = []
        self.pending_rows = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="embed") if embedder.overlap else None
        self.in_flight: tuple[Future[np.ndarray] | np.ndarray, list[tuple[_Open, Windows]]] | None = None

    def open(self, key: Any, windows: Iterable[Windows] | None) -> None:
        item = _Open(key)
        self.items.append(item)
        try:
            for chunk in windows or ():
                self._add(item, chunk)
        except AudioSearchError as err:
            item.error = str(err)
        item.complete = True

    def _add(self, item: _Open, chunk: Windows) -> None:
        at = 0
        while at < len(chunk.waves):
            take = min(len(chunk.waves) - at, self.e.batch_size - self.pending_rows)
            part = _slice(chunk, at, at + take)
            item.parts.append((part.starts, part.ends, None))
            item.owed += take
            self.pending.append((item, part))
            self.pending_rows += take
            at += take
            if self.pending_rows >= self.e.batch_size:
                self._submit()

    def flush(self) -> None:
        self._submit()
        self._collect()

    def ready(self) -> Iterator[Embedded]:
        while self.items and self.items[0].complete and self.items[0].owed == 0:
            yield _result(self.items.popleft(), self.e.finish)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self) -> None:
        if not self.pending:
            return
        batch, self.pending, self.pending_rows = self.pending, [], 0
        waves = np.concatenate([w.waves for _, w in batch]) if len(batch) > 1 else batch[0][1].waves
        lengths = np.concatenate([w.lengths for _, w in batch])
        work: Future[np.ndarray] | np.ndarray
        if self.pool is not None:
            work = self.pool.submit(self._timed, waves, lengths)
            self._collect()  # the previous batch, while this one runs
        else:
            work = self._timed(waves, lengths)
        self.in_flight = (work, batch)
        if self.pool is None:
            self._collect()

    def _timed(self, waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.asarray(self.e.encode(waves, lengths), dtype=np.float32)
        self.e.seconds += time.perf_counter() - t0
        self.e.batches += 1
        return out

    def _collect(self) -> None:
        if self.in_flight is None:
            return
        work, batch = self.in_flight
        self.in_flight = None
        vectors = work.result() if isinstance(work, Future) else work
        at = 0
        for item, part in batch:
            n = len(part.waves)
            starts, ends, _ = item.parts[item.filled]
            item.parts[item.filled] = (starts, ends, vectors[at : at + n])
            item.filled += 1
            item.owed -= n
            at += n


def _slice(w: Windows, a: int, b: int) -> Windows:
    if a == 0 and b == len(w.waves):
        return w
    return Windows(w.waves[a:b], w.starts[a:b], w.ends[a:b], w.lengths[a:b])


def _result(item: _Open, finish: FinishFn | None) -> Embedded:
    if item.error is not None:
        return Embedded(item.key, error=item.error)
    if not item.parts:
        return Embedded(item.key)
    starts, ends, vecs = zip(*item.parts, strict=True)
    out = np.concatenate(vecs), np.concatenate(starts), np.concatenate(ends)
    if finish is not None:
        out = finish(*out)
    return Embedded(item.key, *out)


def encode_fn(encoder: Any, batch_size: int | None = None, normalize: bool = True) -> EncodeFn:
    """An encoder's encode_audio for windows already at its rate (the embedder's batch is one forward)."""

    def encode(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if normalize:
            return encoder.encode_audio(waves, encoder.sample_rate, lengths, batch_size or len(waves))
        return encoder.encode_audio(waves, encoder.sample_rate, lengths, batch_size or len(waves), normalize=False)

    return encode


def for_encoder(encoder: Any, batch_size: int = 32, overlap: bool = True) -> Embedder:
    """The embedder of files as the encoder's config says: window vectors, or files as a whole (models.aggregate)."""
    cfg = encoder.config
    if normalizes_windows(cfg):
        return Embedder(encode_fn(encoder, batch_size), batch_size, overlap)
    finish = functools.partial(aggregate, cfg)
    return Embedder(encode_fn(encoder, batch_size, normalize=False), batch_size, overlap, finish)


def embed_files(
    encoder: Any,
    paths: Iterable[Any],
    batch_size: int = 32,
    overlap: bool = True,
    check: Callable[[], None] | None = None,
) -> Iterator[Embedded]:
    """Each file's window vectors (in order; a file's one vector for aggregating models), windowed as the
    encoder's config says; long files stream. `check` is called before each file and each batch, and raises to
    stop the work (a client went away)."""
    from audiosearch.models.audio_stream import file_windows

    cfg, tail = encoder.config, min_tail_seconds(encoder.config)
    items = ((p, file_windows(p, encoder.sample_rate, cfg.window_seconds, cfg.hop_seconds, tail)) for p in paths)
    embedder = for_encoder(encoder, batch_size, overlap)
    if check is not None:
        items = _checked(items, check)
        embedder.encode = checked_encode(embedder.encode, check)
    return embedder.embed(items)


def checked_encode(encode: EncodeFn, check: Callable[[], None]) -> EncodeFn:
    """`encode` that calls `check` first: work stops at the next batch."""

    def run(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        check()
        return encode(waves, lengths)

    return run


def _checked(items: Iterable[Item], check: Callable[[], None]) -> Iterator[Item]:
    for item in items:
        check()
        yield item
