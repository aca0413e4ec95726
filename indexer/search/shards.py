"""A sharded index: the two FAISS candidate searches of a snapshot split over M shards, merged back exactly.

What is sharded is only what grows with the library and costs a scan: the audio windows' vectors (what
AudioIndex.grouped searches through its backend) and the words' text vectors (WordsReader.vector_search). Shard
i of M holds rows [lo, hi) of each (`bounds`), copied out of the snapshot's files on shared storage; the metadata
(SQLite), BM25 (FTS5) and the exact rescoring of every candidate stay with the caller (the Searcher), which reads
the same snapshot memory-mapped and touches only its candidates' rows.

Exactness: the global top k of a Flat index is contained in the union of every shard's top k, and an inner
product is computed alike whichever rows share the index with it, so `merge_top` over the shards' lists gives
the single index's list: the same scores, and the same rows in the same order (tied rows listed highest first,
as FAISS does), except which rows of a tie across the cut are kept: FAISS's heap picks those by no fixed rule,
`merge_top` keeps the lowest. The ranker pages only once a page is provably exact (its last score strictly above
what any file outside the candidate lists could reach, audiosearch.indexer.search.fusion), so which of the tied
rows at a cut a list holds does not change a page: every page (modes, offsets, filters, ties, no_close_match)
is the single process's page.

An IVF index (`--faiss auto`'s compressed codes, or a forced IVF) splits by ids too: a shard keeps its rows'
entries of every list (`ivf_part`), with the whole index's trained quantizer and codes, and re-scores its
candidates exactly from the snapshot's full vectors (vectors.npy, read row by row) as the single process does.
A row's code score is the same number in a shard as in the whole index (same lists probed, same lookup tables),
so each shard's candidates hold every one of the single process's candidates among its rows: the merged list
has exact scores and finds at least what the single process finds (docs/serving-on-ray.md measures how much
more). An HNSW graph does not split (`unsplittable`).

`ShardPart` is one shard (Ray runs each in an actor: audiosearch.indexer.search.ray_shards); `ShardedCandidates`
is the caller's side, given a function that asks every shard of one snapshot. Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from audiosearch.indexer.errors import IndexMismatchError
from audiosearch.indexer.faiss_index import read_faiss
from audiosearch.indexer.row_file import RowFile
from audiosearch.indexer.search.backends import RerankedSearch, cpu_backend, flat_storage, inner_flat
from audiosearch.indexer.snapshots import FULL_VECTORS, VECTORS, read_manifest
from audiosearch.indexer.words.store import WORD_VECTORS

# What a shard answers: per query, scores (Q, k) and global rows (Q, k), best first, -1 rows where fewer exist;
# the words' search also the file ids of those rows.
Found = tuple[np.ndarray, np.ndarray]
IVF = re.compile(r"IVF\d+,")  # a factory string of a plain IVF index (the auto compressed one, or one given)


def bounds(n: int, shard: int, shards: int) -> tuple[int, int]:
    """Rows [lo, hi) of n that shard `shard` of `shards` holds: contiguous, sizes differing by one at most."""
    return n * shard // shards, n * (shard + 1) // shards


def unsplittable(factory: str | None) -> str | None:
    """Why a snapshot's FAISS index (its manifest's factory) cannot be split into shards; None when it can (Flat
    and IVF split by rows). HNSW is refused rather than rebuilt per shard: a graph cut into rows is no longer
    searchable, and rebuilding each shard's graph at every load and restart would take minutes (HNSW32: 152 s
    for 1M lite windows on 2 cores, docs/performance.md), for an index `--faiss auto` never picks."""
    if factory == "Flat" or IVF.match(factory or ""):
        return None
    if "HNSW" in (factory or ""):
        return (
            f"an HNSW graph ({factory!r}) cannot be split into shards (each would rebuild its graph at every "
            "load: minutes per million windows); serve it with --shards 1, or index it with --faiss auto"
        )
    return f"a {factory!r} index cannot be split into shards (Flat and IVF can); serve it with --shards 1"


def ivf_part(whole: faiss.Index, lo: int, hi: int) -> int:
    """Cut an IVF index read into RAM down to ids [lo, hi) of its lists, in place; returns the bytes of those
    lists. FAISS 1.15 reads fast-scan lists into RAM whatever the flags, clone_index refuses them and
    copy_subset_to garbles their packed codes (it copies them as one code per entry: wrong neighbours), so every
    other id is removed and the rest copied into lists of their size: while it loads, a shard holds the whole
    index once."""
    ivf = faiss.downcast_index(whole)  # `whole` owns it and keeps it alive
    if not isinstance(ivf, faiss.IndexIVF):
        raise IndexMismatchError(f"only a plain IVF index splits by ids, not a {type(ivf).__name__}")
    ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # removal needs none, and a shard looks nothing up by id
    if (lo, hi) != (0, ivf.ntotal):
        keep = faiss.IDSelectorRange(lo, hi)
        ivf.remove_ids(faiss.IDSelectorNot(keep))
        _compact(ivf)
    return list_bytes(ivf)


def _compact(ivf: faiss.IndexIVF) -> None:
    """Copy the lists into new ones of their size: removal keeps the memory of what it removed. Fast-scan lists
    are copied block by block as they are packed (add_entries to an empty list copies whole blocks)."""
    old = ivf.invlists
    if isinstance(ivf, faiss.IndexIVFFastScan):
        packer = ivf.get_CodePacker()
        packer.this.disown()  # the new lists delete it
        new = faiss.BlockInvertedLists(ivf.nlist, packer)
    else:
        new = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    for i in range(ivf.nlist):
        if old.list_size(i):
            new.add_entries(i, old.list_size(i), old.get_ids(i), old.get_codes(i))
    ivf.replace_invlists(new, True)  # frees the old lists
    new.this.disown()  # the index owns them now
    _release_freed()


def list_bytes(ivf: faiss.IndexIVF) -> int:
    """Bytes of an IVF's lists as held: 8 B ids and the codes (fast-scan: whole blocks of bbs codes)."""
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)], np.int64)
    if isinstance(ivf, faiss.IndexIVFFastScan):
        codes = int((-(-sizes // ivf.bbs)).sum()) * ivf.bbs * ivf.M2 // 2
    else:
        codes = int(sizes.sum()) * ivf.code_size
    return int(sizes.sum()) * 8 + codes


def _release_freed() -> None:
    """Give the removed lists back to the OS: many small blocks, which glibc keeps for reuse unless asked (100k
    windows, 4 shards: a shard held 27 MB of RSS, 11 MB after this)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator decides
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ShardPart:
    """Shard `shard` of `shards` of one snapshot: its rows of the audio windows (a Flat copy of them, or their IVF
    entries) and of the words' vectors, in RAM (1/M of each); the snapshot's files are only read while it loads."""

    def __init__(self, snapshot: Path | str, shard: int, shards: int) -> None:
        self.snapshot, self.shard, self.shards = Path(snapshot), shard, shards
        self._windows(self.snapshot / VECTORS)
        words = self.snapshot / WORD_VECTORS
        self.words = self.word_ids = None
        self.words_lo = self.words_total = 0
        if words.is_file():
            full = read_faiss(words, mmap=True)
            self.words, self.words_lo, self.words_total = self._slice(words, full)
            ids = faiss.vector_to_array(faiss.downcast_index(full).id_map) if full.ntotal else np.zeros(0)
            self.word_ids = np.asarray(ids, np.int64)[self.words_lo : self.words_lo + self.words.ntotal]

    def _windows(self, path: Path) -> None:
        """The audio windows this shard searches (`backend`, answering global window ids from `offset` on), the
        rows it holds [lo, hi) of ntotal, and the bytes they take."""
        ivf = IVF.match(read_manifest(self.snapshot).get("faiss") or "") is not None
        full = read_faiss(path, mmap=not ivf)  # an IVF is cut in place, so read into RAM (fast-scan lists are anyway)
        self.ntotal = int(full.ntotal)
        self.lo, self.hi = bounds(self.ntotal, self.shard, self.shards)
        if ivf:
            self.nbytes = ivf_part(full, self.lo, self.hi)
            vectors = self.snapshot / FULL_VECTORS  # a compressed index: candidates re-scored from these
            self.backend = RerankedSearch(full, RowFile(vectors)) if vectors.is_file() else full
            self.offset = 0  # an IVF's ids are the window ids
        elif self.shards == 1 and inner_flat(full) is None:  # one shard of another index type: the index itself
            self.backend, self.offset, self.nbytes = read_faiss(path), 0, path.stat().st_size
        else:
            part, _, _ = self._slice(path, full)
            self.backend, self.offset, self.nbytes = cpu_backend(part), self.lo, int(part.ntotal) * part.d * 4

    def _slice(self, path: Path, full: faiss.Index) -> tuple[faiss.Index, int, int]:
        """(this shard's rows of `full`, read memory-mapped from `path`, as a Flat index of their own, its first
        row, the file's row count)."""
        flat = inner_flat(full)
        if flat is None or (path.name == VECTORS and not isinstance(faiss.downcast_index(full), faiss.IndexFlat)):
            why = unsplittable(read_manifest(self.snapshot).get("faiss")) or "not a Flat index"
            raise IndexMismatchError(f"{path}: {why}")
        lo, hi = bounds(int(full.ntotal), self.shard, self.shards)
        part = faiss.IndexFlat(flat.d, flat.metric_type)
        storage = flat_storage(full)
        if hi > lo and storage is not None:
            part.add(np.array(storage[lo:hi], dtype=np.float32))  # a copy: the mapping goes with `full`
        return part, lo, int(full.ntotal)

    def info(self) -> dict[str, Any]:
        """What this shard holds: rows [lo, hi) of the snapshot's total, of the windows and of the words, and the
        bytes of its share of the windows' index."""
        return {
            "snapshot": self.snapshot.name,
            "shard": self.shard,
            "shards": self.shards,
            "windows": [self.lo, self.hi, self.ntotal],
            "words": [self.words_lo, self.words_lo + (int(self.words.ntotal) if self.words else 0), self.words_total],
            "bytes": self.nbytes,
        }

    def search(self, queries: np.ndarray, k: int) -> Found:
        """This shard's best k windows per query: scores and global window ids (the single index's ids)."""
        k = min(k, self.hi - self.lo)
        if k <= 0:
            return _empty(len(queries))
        scores, rows = self.backend.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, np.where(rows >= 0, rows + self.offset, -1)

    def search_words(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This shard's best n files by their words' vectors: scores, global rows of words.faiss, file ids."""
        if self.words is None or self.word_ids is None or min(n, int(self.words.ntotal)) <= 0:
            return (*_empty(len(queries)), np.zeros((len(queries), 0), np.int64))
        scores, rows = self.words.search(np.ascontiguousarray(queries, dtype=np.float32), min(n, self.words.ntotal))
        ids = np.where(rows >= 0, self.word_ids[np.maximum(rows, 0)], -1)
        return scores, np.where(rows >= 0, rows + self.words_lo, -1), ids


def _empty(q: int) -> Found:
    return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)


def merge_top(parts: list[tuple[np.ndarray, ...]], k: int) -> tuple[np.ndarray, ...]:
    """The best k per query over every shard's (scores, rows, *payload) lists, ordered as FAISS orders one
    index's: of a tie across the cut the lowest rows are kept, tied rows are listed highest row first. Padded
    with -inf scores and -1 rows (and payloads) where fewer than k exist."""
    q = len(parts[0][0])
    width = len(parts[0])
    cols = [np.concatenate([p[j] for p in parts], axis=1) for j in range(width)]
    out = [np.full((q, k), -np.inf, np.float32), *(np.full((q, k), -1, np.int64) for _ in range(width - 1))]
    for i in range(q):
        scores, rows = cols[0][i], cols[1][i]
        valid = np.flatnonzero(rows >= 0)
        keep = valid[np.lexsort((rows[valid], -scores[valid]))][:k]  # best first, lowest row first among ties
        keep = keep[np.lexsort((-rows[keep], -scores[keep]))]  # FAISS lists the kept tied rows highest first
        for j in range(width):
            out[j][i, : len(keep)] = cols[j][i][keep]
    return tuple(out)


class ShardedCandidates:
    """The caller's side of one snapshot's shards: a search backend over its windows (for AudioIndex) and the
    words' vector search (for HybridRanker), each asking every shard and merging. `ask(method, queries, k)`
    returns every shard's answer (Ray: one call per actor, side by side); `status()` each shard's info with
    `ready` (and `detail` when not): by default every shard is ready (in-process shards cannot be down)."""

    def __init__(
        self,
        ask: Callable[[str, np.ndarray, int], list[tuple[np.ndarray, ...]]],
        infos: list[dict],
        status: Callable[[], list[dict]] | None = None,
    ) -> None:
        self.ask = ask
        self.status = status or (lambda: [{**i, "ready": True} for i in infos])
        self.ntotal = int(infos[0]["windows"][2]) if infos else 0
        self.n_words = int(infos[0]["words"][2]) if infos else 0
        self.snapshot = infos[0]["snapshot"] if infos else None
        _check_cover(infos, "windows")
        _check_cover(infos, "words")

    def search(self, queries: np.ndarray, k: int) -> Found:
        scores, rows = merge_top(self.ask("search", queries, k), k)
        return scores, rows

    def vector_search(self, queries: np.ndarray, n: int) -> Found:
        """As WordsReader.vector_search: (Q, n) cosines and file ids, n at most the files with words."""
        n = min(n, self.n_words)
        if n == 0:
            return _empty(len(queries))
        scores, _, ids = merge_top(self.ask("search_words", queries, n), n)
        return scores, ids


def _check_cover(infos: list[dict], part: str) -> None:
    """The shards of one snapshot must hold every row once: a shard of another split would give wrong pages."""
    spans = sorted((i[part][0], i[part][1]) for i in infos)
    total = {i[part][2] for i in infos}
    at = 0
    for lo, hi in spans:
        if lo != at:
            break
        at = hi
    if len(total) != 1 or at != next(iter(total)) or len({i["snapshot"] for i in infos}) != 1:
        raise IndexMismatchError(f"the shards do not cover the snapshot's {part} exactly once: {infos}")


class ShardSource(Protocol):
    """Where a Searcher finds the shards of a snapshot: `open` returns once every shard holds it (so a switch of
    snapshots flips only when the new one is loaded everywhere)."""

    def open(self, snapshot: Path) -> ShardedCandidates: ...
