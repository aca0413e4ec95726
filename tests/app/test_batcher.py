"""Micro-batched text queries: concurrent requests share forwards and searches, with the results of sequential ones."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from audiosearch.app.batcher import QueryBatcher
from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.conftest import copy_clips

QUERIES = [
    "a dog barking",
    "rain on a roof",
    "a rooster crowing at dawn",
    "a helicopter flying over",
    "waves on a beach",
    "a chainsaw cutting wood",
    "a clock ticking",
    "a baby crying",
    "crackling fire",
    "someone sneezing",
    "dog",
    "heavy rain and thunder",
    "birds singing",
    "an engine idling",
    "water splashing",
    "footsteps",
]


@pytest.fixture(scope="module")
def index(shared_data, tmp_path_factory, lite_model) -> Path:
    root = tmp_path_factory.mktemp("batcher")
    copy_clips(shared_data, root / "lib", {"dog_bark": 4, "rooster": 4, "rain": 4, "helicopter": 4, "sea_waves": 4})
    build_index(root / "lib", root / "idx", lite_model, IndexOptions(workers=0, progress=False))
    return root / "idx"


def _request(i: int) -> dict:
    """Queries of several shapes: pages, offsets and filters differ between the requests of one batch."""
    body: dict = {"query": QUERIES[i % len(QUERIES)], "k": 3 + i % 5, "offset": i % 3}
    if i % 4 == 0:
        body["filters"] = {"path_prefix": ["dog_bark/", "rain/", "rooster/"][i % 3]}
    return body


def _hits(r: httpx.Response) -> list[tuple[int, float]]:
    assert r.status_code == 200, r.text
    return [(h["id"], h["score"]) for h in r.json()["results"]]


def _same(a: list[list[tuple[int, float]]], b: list[list[tuple[int, float]]]) -> bool:
    """The same files in the same order with the same scores, up to float noise: a query's vector from a batch
    of 8 and from a batch of 1 differ in the 7th digit (onnxruntime's kernels)."""
    ids = [[i for i, _ in page] for page in a] == [[i for i, _ in page] for page in b]
    scores = [s for page in a for _, s in page] == pytest.approx([s for page in b for _, s in page], abs=1e-5)
    return ids and scores


def test_concurrent_requests_get_the_results_of_sequential_ones(index, lite_model) -> None:
    app = create_app(Settings(index_dir=index, query_cache_size=0, batch_max_wait_ms=20), model=lite_model)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        sequential = [_hits(client.post("/search", json=_request(i))) for i in range(48)]
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(lambda i: _hits(client.post("/search", json=_request(i))), range(48)))
        assert client.post("/search/batch", json={"queries": QUERIES[:6], "k": 4}).status_code == 200
        metrics = client.get("/metrics").text
    assert _same(concurrent, sequential)
    count, total = _batch_metric(metrics, "count"), _batch_metric(metrics, "sum")
    assert total == 48 * 2 + 6  # every query went through the batcher once
    assert count < total  # and some of them shared a forward with others
    assert "audiosearch_query_queue_seconds_bucket" in metrics


def test_batch_route_matches_single_queries(index, lite_model) -> None:
    app = create_app(Settings(index_dir=index, query_cache_size=0), model=lite_model)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        batch = client.post("/search/batch", json={"queries": QUERIES[:8], "k": 4}).json()["responses"]
        singles = [_hits(client.get("/search", params={"q": q, "k": 4})) for q in QUERIES[:8]]
    assert _same([[(h["id"], h["score"]) for h in r["results"]] for r in batch], singles)


@pytest.mark.slow
def test_a_client_that_goes_away_does_not_break_its_batch(index, lite_model) -> None:
    # a long gathering window, so the abandoned request and the others are in one batch
    app = create_app(Settings(index_dir=index, query_cache_size=0, batch_max_wait_ms=300), model=lite_model)
    with live_server(app) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            expected = [_hits(client.post("/search", json=_request(i))) for i in range(6)]
        results: dict[int, object] = {}

        def run(i: int, timeout: float) -> None:
            try:
                results[i] = _hits(httpx.post(f"{url}/search", json=_request(i), timeout=timeout))
            except httpx.TimeoutException as err:
                results[i] = err

        # Keep both job slots busy with a long batch first, so the six gather together (an idle service would
        # start a lone query at once) and the impatient one gives up while they wait.
        started = _batches(url)
        long = [f"{i} " + "a dog barking in the rain near a busy road " * 20 for i in range(64)]
        busy = threading.Thread(target=lambda: httpx.post(f"{url}/search/batch", json={"queries": long}, timeout=120))
        busy.start()
        deadline = time.monotonic() + 30
        while _batches(url) == started and time.monotonic() < deadline:
            time.sleep(0.005)
        threads = [threading.Thread(target=run, args=(i, 0.05 if i == 2 else 60)) for i in range(6)]
        for t in threads[:2] + threads[3:]:
            t.start()
        time.sleep(0.02)
        threads[2].start()
        for t in threads:
            t.join()
        busy.join()
        after = _hits(httpx.post(f"{url}/search", json=_request(0), timeout=60))
    assert isinstance(results[2], httpx.TimeoutException)  # it gave up while its batch was gathering
    assert _same([results[i] for i in (0, 1, 3, 4, 5)], [expected[i] for i in (0, 1, 3, 4, 5)])  # type: ignore[misc]
    assert _same([after], [expected[0]])


def _batch_metric(metrics: str, part: str) -> float:
    """audiosearch_query_batch_size's `count` (batches) or `sum` (queries) from a /metrics text."""
    return float(re.search(rf"audiosearch_query_batch_size_{part} (\S+)", metrics).group(1))


def _batches(url: str) -> float:
    return _batch_metric(httpx.get(f"{url}/metrics", timeout=30).text, "count")


def test_batcher_gathers_up_to_its_limit_and_skips_cancelled_queries() -> None:
    seen: list[list[str]] = []

    def job(texts: list[str], options: list[int]) -> list[str]:
        seen.append(list(texts))
        return [f"{t}:{o}" for t, o in zip(texts, options, strict=True)]

    async def main() -> tuple[list, list]:
        batcher = QueryBatcher(job, max_batch=4, max_wait_ms=50)
        gone = asyncio.create_task(batcher.submit(["gone"], [0]))
        await asyncio.sleep(0)  # queued, then its request goes away before the batch starts
        gone.cancel()
        results = await asyncio.gather(*(batcher.submit([f"q{i}"], [i]) for i in range(6)))
        many = await batcher.submit(["a", "b", "c"], [1, 2, 3])
        await batcher.close()
        return results, many

    results, many = asyncio.run(main())
    assert results == [[f"q{i}:{i}"] for i in range(6)] and many == ["a:1", "b:2", "c:3"]
    assert all(len(b) <= 4 for b in seen) and not any("gone" in b for b in seen)
    assert [len(b) for b in seen[:2]] == [4, 2]  # six queries queued together: one full batch, then the rest


def _first_holds(release: threading.Event, seen: list[list[str]]) -> Callable[[list[str], list[int]], list[str]]:
    """A job that records each batch and keeps the batch ["first"] busy until `release` is set."""

    def job(texts: list[str], options: list[int]) -> list[str]:
        seen.append(list(texts))
        if texts == ["first"]:
            release.wait(10)  # busy: the queries that arrive meanwhile queue
        return list(texts)

    return job


def test_an_idle_batcher_starts_a_lone_query_at_once_and_a_busy_one_gathers() -> None:
    release = threading.Event()
    seen: list[list[str]] = []
    job = _first_holds(release, seen)

    async def main() -> list[list[str]]:
        batcher = QueryBatcher(job, max_batch=8, max_wait_ms=1500, in_flight=1)
        first = asyncio.create_task(batcher.submit(["first"], [0]))
        await asyncio.sleep(0.2)
        assert seen == [["first"]]  # started without waiting the 1.5 s it could have
        later = [asyncio.create_task(batcher.submit([f"q{i}"], [i])) for i in range(3)]
        await asyncio.sleep(0.2)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), 30)
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert results == [["first"], ["q0"], ["q1"], ["q2"]]
    assert seen[1:] == [["q0", "q1", "q2"]]  # gathered while the first batch ran


def test_queries_that_arrive_while_every_slot_is_busy_all_join_the_next_batch() -> None:
    """Spread out over more than max_wait, they still form one batch: it is gathered once a slot is free."""
    release = threading.Event()
    seen: list[list[str]] = []
    job = _first_holds(release, seen)

    async def main() -> list[list[str]]:
        batcher = QueryBatcher(job, max_batch=8, max_wait_ms=5, in_flight=1)
        first = asyncio.create_task(batcher.submit(["first"], [0]))
        later = []
        for i in range(4):
            await asyncio.sleep(0.05)  # ten times max_wait apart
            later.append(asyncio.create_task(batcher.submit([f"q{i}"], [i])))
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), 30)
        await batcher.close()
        return results

    assert asyncio.run(main()) == [["first"], ["q0"], ["q1"], ["q2"], ["q3"]]
    assert seen == [["first"], ["q0", "q1", "q2", "q3"]]


def test_a_failing_observer_fails_its_batch_only_and_the_batcher_goes_on() -> None:
    calls: list[int] = []

    def observe(size: int, waits: list[float]) -> None:
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("metrics backend down")

    async def main() -> tuple[object, list[str]]:
        batcher = QueryBatcher(lambda texts, options: list(texts), max_wait_ms=0, observe=observe, in_flight=1)
        try:
            await batcher.submit(["a"], [0])
            first: object = None
        except RuntimeError as err:
            first = err
        second = await asyncio.wait_for(batcher.submit(["b"], [0]), 10)  # its slot was given back
        await batcher.close()
        return first, second

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError) and second == ["b"] and calls == [1, 1]
