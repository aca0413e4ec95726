"""The text -> vector LRU in front of the text tower: bounded by entries and by the memory each entry holds."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from audiosearch.app.search_service import QueryCache


def test_lru_evicts_the_least_recently_used_and_counts() -> None:
    cache = QueryCache(2)
    for i, text in enumerate(["a", "b"]):
        cache.put(text, np.full(4, i, dtype=np.float32))
    assert set(cache.get_many(["a"])) == {"a"}  # "a" is now the most recent
    cache.put("c", np.full(4, 2, dtype=np.float32))
    found = cache.get_many(["a", "b", "c"])
    assert set(found) == {"a", "c"}
    assert found["c"][0] == 2.0
    assert (cache.hits, cache.misses) == (3, 1)


def test_a_cached_row_does_not_keep_its_batch_alive() -> None:
    """The micro-batcher encodes up to hundreds of queries at once; caching a view of one row would pin the
    whole batch, so 4096 entries could hold 4096 batches."""
    cache = QueryCache(8)
    batch = np.random.default_rng(0).standard_normal((512, 384)).astype(np.float32)
    alive = weakref.ref(batch)
    cache.put("q", batch[3])
    expected = batch[3].copy()
    del batch
    gc.collect()
    assert alive() is None
    np.testing.assert_array_equal(cache.get_many(["q"])["q"], expected)


def test_size_zero_caches_nothing() -> None:
    cache = QueryCache(0)
    cache.put("q", np.ones(4, dtype=np.float32))
    assert cache.get_many(["q"]) == {}
