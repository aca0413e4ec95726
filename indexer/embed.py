"""Decoded library files -> embedded files, through the one embedding pipeline (audiosearch.models.embedder).

Shared by the local indexer (decode in worker processes) and Ray shards (decode in the task): a decoded file
becomes one embedder item, a long file the block-by-block windows of audiosearch.models.audio_stream, and files with an
error, already cached content, or content already queued in this run pass through in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from audiosearch.indexer.decoded import Decoded, DecodeSettings, relative_reason
from audiosearch.models.audio import Windows
from audiosearch.models.audio_stream import stream_windows
from audiosearch.models.embedder import Embedded, Item, for_encoder


def embed_decoded(
    decoded: Iterable[Decoded], encoder: object, settings: DecodeSettings, batch_size: int
) -> Iterator[tuple[Decoded, Embedded]]:
    """(file, its vectors or why not) in input order. `Embedded.vectors` is None for files that need no
    embedding (an error, content cached before, or the same content earlier in this run). A copy of content
    that failed earlier in this run (a long file whose read broke part-way) gets that failure too."""
    queued: dict[str, str] = {}  # sha1 -> path of the file embedded for it in this run
    failed: dict[str, str] = {}  # sha1 -> why that file failed
    embedder = for_encoder(encoder, batch_size)  # window vectors, or files as a whole (audiosearch.models.aggregate)
    for e in embedder.embed(_items(decoded, settings, queued, batch_size)):
        d: Decoded = e.key
        if e.error is not None and d.error is None:
            d.error, d.decode_failed = relative_reason(d.job, e.error), d.stream  # a streamed file's read failed
            failed[d.sha1] = d.error
        elif d.copy_of is not None and d.sha1 in failed and d.error is None:  # results come in order: known now
            d.error = failed[d.sha1].replace(d.copy_of, d.job.path, 1) + f" (the same content as {d.copy_of})"
        yield d, e


def _items(decoded: Iterable[Decoded], s: DecodeSettings, queued: dict[str, str], chunk: int) -> Iterator[Item]:
    for d in decoded:
        if not (d.error or d.cached) and d.sha1 in queued:
            d.copy_of = queued[d.sha1]
        if d.error or d.cached or d.copy_of is not None:
            yield d, None
            continue
        queued[d.sha1] = d.job.path
        if d.stream:
            yield d, stream_windows(d.job.full, s.sample_rate, s.window_s, s.hop_s, s.min_tail_s, chunk_windows=chunk)
        else:
            yield d, [Windows(d.waves, d.starts, d.ends, d.lengths)]  # type: ignore[arg-type]
