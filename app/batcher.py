"""Dynamic micro-batching of text queries: concurrent requests share one text forward and one index search.

Requests put their queries on a queue; one worker takes the first, waits at most `max_wait` for more (a lone
request waits no longer than that), and runs everything gathered, up to `max_batch` queries, as one job in
its own thread: cache lookups, one `encode_text` over the distinct uncached texts, one batched FAISS search.
While a job runs, new queries queue up and form the next batch, so under load batches fill by themselves.
This is the pattern of Triton's dynamic batcher and TEI's queue, kept to what one process needs.

A request that goes away (client disconnect, timeout) leaves its slot in the batch: its result is dropped,
the other queries of the batch are unaffected, and a request cancelled before its batch starts costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# The job: (texts, per-query options) -> one result per query; run in the batcher's thread.
Job = Callable[[list[str], list[Any]], list[Any]]


@dataclass
class _Pending:
    text: str
    options: Any
    future: asyncio.Future[Any]
    queued: float = field(default_factory=time.perf_counter)


# Told each batch's size and its queries' queue waits in seconds (the app feeds /metrics with them).
BatchObserver = Callable[[int, list[float]], None]


class QueryBatcher:
    def __init__(
        self, job: Job, max_batch: int = 32, max_wait_ms: float = 2.0, observe: BatchObserver | None = None
    ) -> None:
        self.job, self.max_batch, self.max_wait = job, max(1, max_batch), max(0.0, max_wait_ms) / 1000
        self.observe = observe
        self.batches = self.queries = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="query-batch")

    async def submit(self, texts: Sequence[str], options: Sequence[Any]) -> list[Any]:
        """One result per text, computed in a batch with whatever else is queued."""
        loop = asyncio.get_running_loop()
        self._start(loop)
        pending = [_Pending(t, o, loop.create_future()) for t, o in zip(texts, options, strict=True)]
        for p in pending:
            self._queue.put_nowait(p)  # type: ignore[union-attr]
        try:
            return list(await asyncio.gather(*(p.future for p in pending)))
        finally:
            for p in pending:  # gone early (disconnect, timeout): drop what was not started yet
                p.future.cancel()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._thread.shutdown(wait=True, cancel_futures=True)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(), name="query-batcher")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [p for p in batch if not p.future.done()]  # cancelled while queued: skip
            if not live:
                continue
            now = time.perf_counter()
            self.batches, self.queries = self.batches + 1, self.queries + len(live)
            if self.observe is not None:
                self.observe(len(live), [now - p.queued for p in live])
            texts, options = [p.text for p in live], [p.options for p in live]
            try:
                results = await loop.run_in_executor(self._thread, self.job, texts, options)
            except Exception as err:  # each request sees the error (mapped to HTTP there), the batcher lives on
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            for p, r in zip(live, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)

    async def _gather(self) -> list[_Pending]:
        """The first live query, then whatever else arrives within max_wait, up to max_batch. Queries whose
        request went away while queued take no slot."""
        queue = self._queue
        assert queue is not None
        batch = []
        while not batch:
            first = await queue.get()
            batch = [first] if not first.future.done() else []
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            if queue.empty():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
            else:
                item = queue.get_nowait()
            if not item.future.done():
                batch.append(item)
        return batch
