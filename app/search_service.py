"""The search layer under the HTTP routes: model + live Searcher + query-vector cache + hot reload."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

import audiosearch.indexer.peaks as peaks_mod
from audiosearch.indexer import Clip, Filters, IndexNotFoundError, Page, QuerySpec, Searcher
from audiosearch.indexer.words.extract import FileWords
from audiosearch.models import AudioSearchError, Encoder, InvalidInputError
from audiosearch.models.aggregate import min_tail_seconds
from audiosearch.models.audio_stream import ReadLimit, file_windows
from audiosearch.models.embedder import EncodeFn, checked_encode, for_encoder

if TYPE_CHECKING:
    from audiosearch.indexer.search.shards import ShardSource

log = logging.getLogger(__name__)


class QueryCache:
    """LRU of text -> query vector; repeated queries (autocomplete, pagination) skip the text forward."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_many(self, texts: list[str]) -> dict[str, np.ndarray]:
        with self._lock:
            found = {t: self._data[t] for t in texts if t in self._data}
            for t in found:
                self._data.move_to_end(t)
            self.hits += len(found)
            self.misses += len(set(texts) - set(found))
            return found

    def put(self, text: str, vec: np.ndarray) -> None:
        if self.size <= 0:
            return
        vec = vec.copy()  # a row of a batch would keep the whole batch alive for as long as it is cached
        with self._lock:
            self._data[text] = vec
            self._data.move_to_end(text)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


class SearchService:
    def __init__(
        self,
        model: Encoder,
        index_dir: Path,
        cache_size: int = 4096,
        mmap: bool = False,
        device: str = "cpu",
        shards: ShardSource | None = None,
    ) -> None:
        """`shards`: search a sharded index (audiosearch.indexer.search.shards; `serve --ray`): every snapshot
        opened, the first and each reload's, is loaded on every shard before it serves (two-phase switch)."""
        self.model, self.mmap, self.device, self.shards = model, mmap, device, shards
        self.index_dir = Path(index_dir)
        self.cache = QueryCache(cache_size)
        self._swap = threading.Lock()
        self._audio_lock = threading.Lock()  # one query-by-example forward at a time (text has the batcher)
        # peaks computed on request for files the snapshot has none for: sha1 -> peaks (800 bytes each)
        self._peaks: OrderedDict[str, bytes | None] = OrderedDict()
        self._peaks_lock = threading.Lock()
        self.peaks_cache_size = 4096
        self.searcher = self._open(self.index_dir)

    def _open(self, index_dir: Path) -> Searcher:
        searcher = Searcher(index_dir, mmap=self.mmap, device=self.device, shards=self.shards)
        searcher.check_model(self.model.fingerprint, self.model.config.supersedes)
        return searcher

    def reload(self, index_dir: Path | None = None) -> Searcher:
        """Open the (possibly rebuilt) index next to the live one, then swap: requests never see a gap."""
        new = self._open(Path(index_dir) if index_dir else self.index_dir)
        with self._swap:
            old, self.searcher = self.searcher, new
            if index_dir:
                self.index_dir = Path(index_dir)
        log.info("switched index %s -> %s", old.snapshot.name, new.snapshot.name)
        return new

    def text_vectors(self, queries: list[str]) -> np.ndarray:
        """Query vectors: cached ones from the LRU, the distinct rest in one forward."""
        found = self.cache.get_many(queries)
        missing = list(dict.fromkeys(q for q in queries if q not in found))
        if missing:
            vecs = self.model.encode_text(missing, batch_size=len(missing))
            for q, v in zip(missing, vecs, strict=True):
                found[q] = v
                self.cache.put(q, v)
        return np.stack([found[q] for q in queries])

    def search_batch(self, texts: list[str], queries: list[QuerySpec]) -> list[Page | AudioSearchError]:
        """Many text queries (of one request or of many, gathered by app.batcher): one forward, one search per
        mode and filters. A query that cannot be answered gets its error in its place (see Searcher.search_many)."""
        return self.searcher.search_many(self.text_vectors(texts), queries)

    # -- query by example: bounded read, model lock per batch, stops when the client goes away ----------

    def search_audio(
        self,
        upload: BinaryIO,
        suffix: str,
        k: int,
        offset: int = 0,
        filters: Filters | None = None,
        max_seconds: float | None = 30.0,
        check: Callable[[], None] | None = None,
    ) -> tuple[Page, ReadLimit]:
        """Query by example: the first `max_seconds` of the upload, windowed like indexed files; windows are
        averaged. Returns the page and what was read (seconds, truncated)."""
        vec, read = self.audio_vector(upload, suffix, max_seconds, check)
        return self.searcher.search(vec[None], k, offset, filters)[0], read

    def audio_vector(
        self, upload: BinaryIO, suffix: str, max_seconds: float | None = 30.0, check: Callable[[], None] | None = None
    ) -> tuple[np.ndarray, ReadLimit]:
        """The upload (a file object, read in 1 MB pieces into a named file decoders can open) as one vector."""
        read = ReadLimit(max_seconds, check)
        cfg = self.model.config
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            shutil.copyfileobj(upload, f, 1 << 20)
            f.flush()
            tail = min_tail_seconds(cfg)
            windows = file_windows(
                f.name, self.model.sample_rate, cfg.window_seconds, cfg.hop_seconds, tail, limit=read
            )
            embedder = for_encoder(self.model, batch_size=32, overlap=False)  # windows, or a whole clip (aggregate)
            embedder.encode = self._locked(embedder.encode, check)
            (result,) = embedder.embed([(f.name, windows)])
        if result.error is not None or result.vectors is None:  # the reason, without the server's temp path
            raise InvalidInputError((result.error or "the uploaded audio gives no windows").replace(f.name, "upload"))
        mean = result.vectors.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        if norm == 0:
            raise InvalidInputError("the uploaded audio gives no usable embedding")
        return (mean / norm).astype(np.float32), read

    def _locked(self, encode: EncodeFn, check: Callable[[], None] | None) -> EncodeFn:
        """`encode` under the audio lock, held per batch only (decoding one upload never holds up another's
        forward), stopping first if `check` says the client went away."""

        def run(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
            with self._audio_lock:
                return encode(waves, lengths)

        return checked_encode(run, check) if check is not None else run

    def clip(self, clip_id: int) -> Clip:
        clip = self.searcher.clip(clip_id)
        if clip is None:
            raise IndexNotFoundError(f"no clip with id {clip_id}")
        return clip

    def clip_words(self, clip_id: int) -> FileWords | None:
        """The words indexed for a clip; None for an index built before words were indexed."""
        words = self.searcher.reader.words
        return words.of(clip_id) if words is not None else None

    def clip_peaks(self, clip_id: int) -> tuple[list[float] | None, str]:
        """The clip's waveform peaks and where they came from: the snapshot ("index"), or, for files it has none
        for, computed from the file once (audiosearch.indexer.peaks, up to ON_DEMAND_MAX_SECONDS long) and kept
        in an LRU by content hash ("file"); ("none") when neither can give them."""
        stored = self.searcher.reader.peaks(clip_id)
        if stored is not None:
            return peaks_mod.decode(stored), "index"
        sha1 = self.clip(clip_id).sha1
        with self._peaks_lock:
            known = sha1 in self._peaks
            blob = self._peaks.get(sha1)
        if not known:
            blob = peaks_mod.file_peaks(self.clip_file(clip_id), peaks_mod.ON_DEMAND_MAX_SECONDS)
            with self._peaks_lock:
                self._peaks[sha1] = blob
                while len(self._peaks) > self.peaks_cache_size:
                    self._peaks.popitem(last=False)
        return (peaks_mod.decode(blob), "file") if blob else (None, "none")

    def clip_file(self, clip_id: int) -> Path:
        """The clip's file, resolved and checked to lie inside the indexed library (symlinks included)."""
        clip = self.clip(clip_id)
        library = self.searcher.library.resolve()
        path = (library / clip.path).resolve()
        if not path.is_relative_to(library) or not path.is_file():
            raise IndexNotFoundError(f"clip {clip_id} is not available")
        return path

    def similar(
        self, clip_id: int, k: int, offset: int = 0, start: float | None = None, mode: str = "audio"
    ) -> tuple[Clip, Page]:
        """More like this: the library ranked by the clip's stored vectors (Searcher.similar), no forward."""
        return self.searcher.similar(clip_id, k, offset, start, mode)
