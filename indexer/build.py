"""`build_index`: scan a library, embed what is new, write a snapshot, flip CURRENT."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import multiprocessing as mp
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audiosearch.indexer.cache import EmbeddingCache
from audiosearch.indexer.decode import decode_job, init_pool_worker, init_worker
from audiosearch.indexer.decoded import Decoded, DecodeJob, DecodeSettings
from audiosearch.indexer.embed import embed_decoded
from audiosearch.indexer.errors import IndexBuildError
from audiosearch.indexer.failures import FailureMemory
from audiosearch.indexer.faiss_index import AUTO, IndexPolicy, choose_index, train_if_needed, training_size
from audiosearch.indexer.file_ids import LAST_ID, assign_file_ids, last_file_id
from audiosearch.indexer.handoff import handoff_folder, receive
from audiosearch.indexer.scan import FileEntry, scan_library
from audiosearch.indexer.snapshots import (
    current_snapshot,
    make_manifest,
    previous_files,
    prune_snapshots,
    unchanged_snapshot,
)
from audiosearch.indexer.store import SnapshotWriter
from audiosearch.indexer.words.build import WordSource, library_words, open_word_cache
from audiosearch.indexer.words.cache import WordCache
from audiosearch.models.aggregate import min_tail_seconds
from audiosearch.models.audio import STREAM_OVER_SECONDS
from audiosearch.models.encoder import Encoder

log = logging.getLogger(__name__)
# what decode workers skip: contents already embedded, and contents that failed before (sha1 -> (path, reason))
Skip = tuple[frozenset[str], dict[str, tuple[str, str]]]


@dataclass
class IndexOptions:
    batch_size: int = 32
    workers: int = 1  # decode processes; 0 decodes in this process
    window_s: float | None = None  # default: the model's config
    hop_s: float | None = None
    faiss_factory: str = AUTO  # or a FAISS index_factory string
    policy: IndexPolicy = field(default_factory=IndexPolicy)  # what `auto` may use (faiss_index.choose_index)
    strict: bool = False
    progress: bool = True
    max_seconds: float = 24 * 3600  # longer files are refused (a sign of a wrong file, not a recording)
    stream_over_s: float = STREAM_OVER_SECONDS  # longer files are read in blocks, memory bounded
    # path -> (size, mtime_ns, sha1) hashed elsewhere this run (the Ray shards), so files are not read twice
    known_hashes: dict[str, tuple[int, int, str]] | None = None
    retry_failed: bool = False  # decode again the files that failed before (else their failure is remembered)


@dataclass
class IndexReport:
    files: int = 0
    windows: int = 0
    embedded: int = 0  # files embedded in this run (the rest came from the cache)
    tags_read: int = 0  # files whose tags were read in this run (new contents)
    texts_encoded: int = 0  # word texts encoded in this run (new or renamed files)
    skipped: int = 0
    removed: int = 0
    seconds: float = 0.0
    snapshot: str = ""
    unchanged: bool = False  # the live snapshot already held exactly this: no new one was written
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def clips_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"indexed {self.files} files ({self.windows} windows): {self.embedded} embedded, "
            f"{self.files - self.embedded} unchanged, {self.removed} removed, {self.skipped} skipped; "
            f"{self.seconds:.1f} s, {self.clips_per_second:.1f} clips/s"
            + (f"; nothing changed, snapshot {self.snapshot} kept" if self.unchanged else "")
        )


def build_index(audio_dir: Path, index_dir: Path, model: Encoder, options: IndexOptions | None = None) -> IndexReport:
    """Index (or update the index of) one library. Raises IndexBuildError when nothing could be indexed."""
    opts = options or IndexOptions()
    audio_dir, index_dir = Path(audio_dir).resolve(), Path(index_dir)
    if not audio_dir.is_dir():
        raise IndexBuildError(f"{audio_dir}: not a directory")
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(index_dir):
            return _build(audio_dir, index_dir, model, opts)
    except (OSError, sqlite3.OperationalError) as err:
        # Disk full, read-only or vanished storage: the live snapshot is untouched (it is only replaced
        # by a rename at the very end), so say so instead of printing a traceback.
        reason = getattr(err, "strerror", None) or str(err)
        raise IndexBuildError(
            f"{index_dir}: cannot write the index ({reason}); the previous index is unchanged"
        ) from None


@contextlib.contextmanager
def run_lock(folder: Path, what: str = "indexing run") -> Iterator[None]:
    """One run per folder at a time: a second one is refused at once rather than interleaving writes."""
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBuildError(f"{folder}: another {what} is in progress") from None
        yield


def _build(audio_dir: Path, index_dir: Path, model: Encoder, opts: IndexOptions) -> IndexReport:
    t0 = time.perf_counter()
    window_s, hop_s = resolve_window_hop(model, opts)
    report = IndexReport()
    entries, unreadable = scan_library(audio_dir)
    report.errors += [{"path": p, "reason": r} for p, r in unreadable]
    prev = previous_files(index_dir)
    cache = EmbeddingCache(index_dir / "work" / "cache.sqlite", model.fingerprint, window_s, hop_s)
    failures = FailureMemory(index_dir / "work" / "cache.sqlite", retry=opts.retry_failed)
    words = open_word_cache(index_dir / "work", model)
    try:
        for old in model.config.supersedes:  # an index of padded vectors: convert its cache, embed nothing again
            if taken := cache.adopt_padded(old["fingerprint"], model.dim):
                log.info(
                    "took %d files' vectors from the cache of %s (padded to %d)", taken, old["fingerprint"], old["dim"]
                )
        settings = DecodeSettings(
            model.sample_rate, window_s, hop_s, opts.max_seconds, opts.stream_over_s, min_tail_seconds(model.config)
        )
        known = {**failures.known_hashes(), **(opts.known_hashes or {})}
        jobs = [job_for(e, audio_dir, prev, known) for e in entries]
        peaks: dict[str, bytes] = {}  # sha1 -> waveform peaks of the files decoded in this run
        work = index_dir / "work" / "handoff"
        hashes = _embed_missing(jobs, (cache, failures), model, settings, opts, report, work, peaks)
        texts = _write_snapshot(
            index_dir, audio_dir, model, (cache, words), entries, hashes, prev, opts, report, window_s, hop_s, peaks
        )
        cache.prune(hashes.values())
        for old in model.config.supersedes:  # taken over above; the new snapshot no longer needs them
            cache.drop_fingerprint(old["fingerprint"])
        if texts is not None:  # None: the live snapshot was kept, and with it everything its words use
            words.prune(hashes.values(), texts)
    finally:
        cache.close()
        failures.close()
        words.close()
        _append_errors(index_dir, report)
    report.removed = len(set(prev) - {e.path for e in entries})
    report.seconds = time.perf_counter() - t0
    return report


def resolve_window_hop(model: Encoder, opts: IndexOptions) -> tuple[float, float]:
    """Window and hop in seconds: the options', else the model's. Part of the embedding cache key."""
    window_s = opts.window_s or model.config.window_seconds
    return window_s, opts.hop_s or opts.window_s or model.config.hop_seconds


def job_for(
    e: FileEntry, root: Path, prev: dict[str, tuple[int, int, int, str]], known: dict[str, tuple[int, int, str]]
) -> DecodeJob:
    """A decode job; its content hash is reused when size and mtime match what was hashed before."""
    old, seen = prev.get(e.path), known.get(e.path)
    if old and old[1:3] == (e.size, e.mtime_ns):
        sha1: str | None = old[3]
    elif seen and seen[:2] == (e.size, e.mtime_ns):
        sha1 = seen[2]
    else:
        sha1 = None
    return DecodeJob(e.path, str(root / e.path), e.size, e.mtime_ns, sha1)


def _embed_missing(
    jobs: list[DecodeJob],
    caches: tuple[EmbeddingCache, FailureMemory],
    model: Encoder,
    settings: DecodeSettings,
    opts: IndexOptions,
    report: IndexReport,
    handoff: Path,
    peaks: dict[str, bytes] | None = None,
) -> dict[str, str]:
    """Decode in workers while the model embeds; commit each file to the cache, and remember the files that
    cannot be decoded. Returns path -> sha1; `peaks` receives the waveform peaks of the files decoded (sha1 ->
    peaks, 800 bytes each)."""
    cache, failures = caches
    hashes: dict[str, str] = {}
    done = frozenset(cache.done_hashes())
    bar = tqdm(total=len(jobs), unit="file", disable=not opts.progress, desc="indexing")
    decoded = _decoded(jobs, (done, failures.reasons()), settings, opts.workers, handoff)
    for d, e in embed_decoded(decoded, model, settings, opts.batch_size):
        bar.update(1)
        d.waves = None  # embedded: the windows need not wait for the rest of the run
        if d.error:
            report.errors.append({"path": d.job.path, "reason": d.error})
            failures.note(d)
            continue
        hashes[d.job.path] = d.sha1
        if d.peaks and peaks is not None:
            peaks[d.sha1] = d.peaks
        if e.vectors is not None:
            cache.put(d.sha1, d.duration, d.sample_rate, d.channels, e.starts, e.ends, e.vectors)
            report.embedded += 1
    bar.close()
    failures.save()
    return hashes


def _decoded(jobs: list[DecodeJob], skip: Skip, s: DecodeSettings, workers: int, handoff: Path) -> Iterable[Decoded]:
    """Decoded files in job order. At most a few jobs per worker are in flight, so decoded audio never
    piles up when the model is slower than decoding (memory stays flat however large the library)."""
    if workers <= 0:
        init_worker(skip[0], s, failed=skip[1])
        yield from map(decode_job, jobs)
        return
    try:
        yield from _decoded_in_pool(jobs, skip, s, workers, handoff)
    except BrokenProcessPool:  # raised by result() or, once the pool noticed, by submit()
        raise IndexBuildError(
            "a decode worker died (a decoder crash or out of memory); files embedded so far are cached, "
            "rerun to continue, or use --workers 0 to find the file"
        ) from None


def _decoded_in_pool(
    jobs: list[DecodeJob], skip: Skip, s: DecodeSettings, workers: int, handoff: Path
) -> Iterable[Decoded]:
    # spawn, not fork: forking a process that already runs torch threads can deadlock the child.
    ctx = mp.get_context("spawn")
    init = (skip[0], s, str(handoff), skip[1])
    with (
        handoff_folder(handoff),  # left after the pool: its workers write into it until they stop
        ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_pool_worker, initargs=init) as pool,
    ):
        queue = iter(jobs)
        pending = deque(pool.submit(decode_job, j) for j in itertools.islice(queue, 4 * workers))
        while pending:
            yield receive(pending.popleft().result())
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(decode_job, nxt))


def _write_snapshot(
    index_dir: Path,
    audio_dir: Path,
    model: Encoder,
    caches: tuple[EmbeddingCache, WordCache],
    entries: list[FileEntry],
    hashes: dict[str, str],
    prev: dict,
    opts: IndexOptions,
    report: IndexReport,
    window_s: float,
    hop_s: float,
    peaks: dict[str, bytes] | None = None,
) -> list[str] | None:
    """Writes and commits the snapshot; returns the texts of the files' words (what the word cache keeps), or
    None when nothing changed and the live snapshot stays."""
    cache, word_cache = caches
    indexed = [e for e in entries if e.path in hashes]
    if not indexed:
        raise IndexBuildError(f"{audio_dir}: nothing could be indexed ({len(report.errors)} files skipped)")
    if opts.strict and report.errors:
        raise IndexBuildError(f"--strict: {len(report.errors)} files could not be indexed, e.g. {report.errors[0]}")
    report.files, report.skipped = len(indexed), len(report.errors)
    files = {e.path: (e.size, e.mtime_ns, hashes[e.path]) for e in indexed}
    # Chosen for this run's windows: the same files give the same choice (no new snapshot), a library that grew
    # past a threshold, or a changed policy, a new one.
    per_content = cache.n_windows({sha1 for _, _, sha1 in files.values()})
    windows = sum(per_content[sha1] for _, _, sha1 in files.values())  # a copy of a file has its own windows
    choice = choose_index(opts.faiss_factory, windows, model.dim, opts.policy)
    live = unchanged_snapshot(index_dir, files, make_manifest(audio_dir, model, {}, window_s, hop_s), choice.factory)
    if live is not None:  # nothing to serve differently: CURRENT, the snapshots and the service stay as they are
        report.snapshot, report.windows, report.unchanged = live["snapshot"], live["counts"]["windows"], True
        return None
    log.info("FAISS index %s (%s)", choice.factory, choice.reason)
    writer = SnapshotWriter(index_dir, model.dim, choice.factory)
    try:
        if not writer.index.is_trained:
            sample = _training_sample(cache, [hashes[e.path] for e in indexed], training_size(writer.index))
            train_if_needed(writer.index, sample, choice.factory)
        file_ids, last_id = assign_file_ids([e.path for e in indexed], prev, last_file_id(index_dir, prev))
        for e, file_id in zip(indexed, file_ids, strict=True):
            c = cache.get(hashes[e.path])
            writer.add_file(
                file_id,
                (e.path, e.size, e.mtime_ns, hashes[e.path], c.duration, c.sample_rate, c.channels),
                c.starts,
                c.ends,
            )
            writer.add_vectors(c.vectors)
            if peaks and hashes[e.path] in peaks:
                writer.add_peaks([(file_id, peaks[hashes[e.path]])])
        # unchanged files: their peaks from the live snapshot (files with none get them on request, see peaks.py)
        writer.copy_peaks(current_snapshot(index_dir))
        sources = [WordSource(e.path, hashes[e.path], audio_dir / e.path) for e in indexed]
        words = library_words(sources, word_cache, model)
        writer.add_words(list(zip(file_ids, words.words, strict=True)), words.vectors)
        report.tags_read, report.texts_encoded = words.tags_read, words.texts_encoded
        counts = {"files": len(indexed), "windows": writer.n_windows, "skipped": len(report.errors)}
        manifest = {**make_manifest(audio_dir, model, counts, window_s, hop_s), LAST_ID: last_id}
        manifest["faiss_choice"] = choice.manifest()
        report.snapshot = writer.commit(manifest).name
    except BaseException:
        writer.abort()
        raise
    report.windows = writer.n_windows
    prune_snapshots(index_dir)
    return [w.text for w in words.words if w.informative]


def _training_sample(cache: EmbeddingCache, hashes: list[str], limit: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    picked = rng.permutation(len(hashes))
    vecs, n = [], 0
    for i in picked:
        v = cache.get(hashes[i]).vectors
        vecs.append(v)
        n += len(v)
        if n >= limit:
            break
    return np.concatenate(vecs)


def _append_errors(index_dir: Path, report: IndexReport) -> None:
    if not report.errors:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(index_dir / "errors.jsonl", "a") as f:
        for err in report.errors:
            f.write(json.dumps({"time": stamp, "snapshot": report.snapshot, **err}) + "\n")
