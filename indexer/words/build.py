"""The words step of a build: each file's words and the text-tower vector of them, from the cache where it can.

Tags depend on a file's content, so they are cached by content hash and read (mutagen, indexer.words.tags) only for
contents never seen; path words cost nothing to recompute; the text vector is cached by its text and model,
so an unchanged file is neither read nor encoded again, and a renamed one encodes only its new words. A
snapshot written before words existed gets them for every file on the next run, also for files whose audio
vectors all come from the cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosearch.indexer.words.cache import WordCache
from audiosearch.indexer.words.extract import FileWords, file_words
from audiosearch.indexer.words.tags import VERSION as TAGS_VERSION
from audiosearch.indexer.words.tags import read_tags
from audiosearch.models.encoder import Encoder

log = logging.getLogger(__name__)
TAG_COMMIT_EVERY = 256  # files whose tags are cached in one transaction (a killed run keeps the rest)


@dataclass(frozen=True)
class WordSource:
    path: str  # in the library
    sha1: str
    full: Path


def open_word_cache(work: Path, model: Encoder) -> WordCache:
    return WordCache(work / "cache.sqlite", model.fingerprint, TAGS_VERSION)


@dataclass
class WordsReport:
    words: list[FileWords]  # one per file
    vectors: np.ndarray  # (files with words, dim), in file order
    tags_read: int  # files whose tags were read (contents not seen before)
    texts_encoded: int  # texts not in the cache


def library_words(files: list[WordSource], cache: WordCache, model: Encoder, batch_size: int = 64) -> WordsReport:
    """The words of each file, and the text vectors of those with words."""
    t0 = time.perf_counter()
    tags = cache.tags({f.sha1 for f in files})
    unread = list({f.sha1: f for f in files if f.sha1 not in tags}.values())
    for i in range(0, len(unread), TAG_COMMIT_EVERY):
        fresh = {f.sha1: read_tags(f.full) for f in unread[i : i + TAG_COMMIT_EVERY]}
        cache.put_tags(fresh)
        tags.update(fresh)
    words = [file_words(f.path, tags[f.sha1]) for f in files]
    texts = [w.text for w in words if w.informative]
    vectors = cache.vectors(texts)
    todo = list(dict.fromkeys(t for t in texts if t not in vectors))
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        encoded = model.encode_text(chunk)
        cache.put_vectors(chunk, encoded)
        vectors.update(zip(chunk, encoded, strict=True))
    log.info(
        "words: %d files, %d with words; tags read from %d files, %d texts encoded (%.1f s)",
        len(files), len(texts), len(unread), len(todo), time.perf_counter() - t0,
    )  # fmt: skip
    matrix = np.stack([vectors[t] for t in texts]) if texts else np.zeros((0, model.dim), np.float32)
    return WordsReport(words, matrix, len(unread), len(todo))
