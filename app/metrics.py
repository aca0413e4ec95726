"""Prometheus metrics, one registry per app so several apps (tests) can live in one process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from starlette.types import ASGIApp, Receive, Scope, Send


class CacheCounts:
    """The live service's query-cache hits and misses, read at each scrape: counts that only grow are counters
    (exposed as audiosearch_query_cache_{hits,misses}_total)."""

    def __init__(self) -> None:
        self.cache: Any = None  # app.search_service.QueryCache, once the service is up

    def collect(self) -> Iterator[CounterMetricFamily]:
        if self.cache is not None:
            yield CounterMetricFamily("audiosearch_query_cache_hits", "query-vector cache hits", self.cache.hits)
            yield CounterMetricFamily("audiosearch_query_cache_misses", "query-vector cache misses", self.cache.misses)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "audiosearch_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "audiosearch_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.files = Gauge("audiosearch_index_files", "files in the live index", registry=self.registry)
        self.windows = Gauge("audiosearch_index_windows", "windows (vectors) in the live index", registry=self.registry)
        self.index_memory = Gauge(
            "audiosearch_index_memory_bytes",
            "bytes of the live audio index's vectors/codes/graph: read into RAM (where=ram) or left on disk "
            "and read on demand (where=mapped: memory-mapped codes, the full vectors beside compressed codes)",
            ["where"],
            registry=self.registry,
        )
        self.cache_counts = CacheCounts()
        self.registry.register(self.cache_counts)
        self.in_flight = Gauge(
            "audiosearch_work_in_flight",
            "heavy requests whose work runs in a worker thread",
            ["route"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "audiosearch_query_batch_size",
            "text queries per batched forward + search",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "audiosearch_query_queue_seconds",
            "time a text query waited for its batch",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )

    def observe_batch(self, size: int, waits: list[float]) -> None:
        self.batch_size.observe(size)
        for w in waits:
            self.queue_wait.observe(w)

    def render(self, service: Any) -> tuple[bytes, str]:
        if service is not None:
            self.files.set(service.searcher.n_files)
            self.windows.set(service.searcher.index.ntotal)
            for where, n in service.searcher.reader.memory().items():
                self.index_memory.labels(where.removesuffix("_bytes")).set(n)
            self.cache_counts.cache = service.cache
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times requests by route template (not raw path, so ids don't explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [500]

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
