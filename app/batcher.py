"""Dynamic micro-batching of text queries: concurrent requests share one text forward and one index search.

Requests put their queries on a queue; one worker takes the first, waits at most `max_wait` for more while a
batch is already running (an idle service starts a lone request at once: nothing would join it, and waiting
would delay every query at concurrency 1), and runs everything gathered, up to `max_batch` queries, as jobs in its
own threads: cache lookups, one `encode_text` over the distinct uncached texts, one batched FAISS search. A
batch of 8 or more runs as two jobs side by side (texts of like length together), and a second batch may start
while one runs: one job at a time leaves a core idle under load (bench/query.py measures the difference).
While jobs run, new queries queue up and form the next batch, so under load batches fill by themselves. This
is the pattern of Triton's dynamic batcher and TEI's queue, kept to what one process needs.

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

from audiosearch.core.threads import one_search_thread

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
        self,
        job: Job,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        observe: BatchObserver | None = None,
        in_flight: int = 2,
    ) -> None:
        self.job, self.max_batch, self.max_wait = job, max(1, max_batch), max(0.0, max_wait_ms) / 1000
        self.observe = observe
        self.batches = self.queries = 0
        self._active = 0  # jobs running now: only then is waiting for company worth it
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.in_flight = max(1, in_flight)
        self._thread = ThreadPoolExecutor(
            self.in_flight, thread_name_prefix="query-batch", initializer=one_search_thread
        )

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
            self._queue, self._active = asyncio.Queue(), 0  # jobs of an earlier loop are gone with it
            self._worker = loop.create_task(self._run(), name="query-batcher")

    async def _run(self) -> None:
        """Gather a batch, start it, gather the next: up to `in_flight` batches run at once, so a batch that
        encodes never leaves the other core idle while the next one gathers."""
        slots = asyncio.Semaphore(self.in_flight)
        running: set[asyncio.Task[None]] = set()
        while True:
            # A free slot first, then the batch: while every slot is busy, queries queue up and all join the next
            # batch (gathered first, it would wait for its slot while later queries queued behind it).
            await slots.acquire()
            batch = await self._gather()
            live = [p for p in batch if not p.future.done()]  # cancelled while queued: skip
            if not live:
                slots.release()
                continue
            for i, part in enumerate(_split(live, self.in_flight - self._active)):  # one part per free slot
                if i:
                    await slots.acquire()  # free: _split made no more parts than free slots
                self._active += 1  # counted from here: the next gather already sees a busy service
                task = asyncio.get_running_loop().create_task(self._job(part))
                running.add(task)  # a reference until it is done (the loop keeps only weak ones)
                task.add_done_callback(lambda t: self._finished(t, running, slots))

    def _finished(self, task: asyncio.Task[None], running: set[asyncio.Task[None]], slots: asyncio.Semaphore) -> None:
        """Whatever ended the job (done, failed, cancelled before it ran): its slot and count are given back."""
        running.discard(task)
        self._active = max(0, self._active - 1)  # never below 0, should a worker restart have reset it
        slots.release()

    async def _job(self, live: list[_Pending]) -> None:
        try:
            now = time.perf_counter()
            self.batches, self.queries = self.batches + 1, self.queries + len(live)
            if self.observe is not None:
                self.observe(len(live), [now - p.queued for p in live])
            texts, options = [p.text for p in live], [p.options for p in live]
            results = await asyncio.get_running_loop().run_in_executor(self._thread, self.job, texts, options)
        except Exception as err:  # each request sees the error (mapped to HTTP there), the batcher lives on
            results = [err] * len(live)
        for p, r in zip(live, results, strict=True):  # a result may be that query's own error
            if not p.future.done():
                p.future.set_exception(r) if isinstance(r, BaseException) else p.future.set_result(r)

    async def _gather(self) -> list[_Pending]:
        """The first live query, then whatever else arrives within max_wait (while a job runs; idle: what is queued
        by the next turn of the event loop), up to max_batch. Queries whose request went away take no slot."""
        queue = self._queue
        assert queue is not None
        batch = []
        while not batch:
            first = await queue.get()
            batch = [first] if not first.future.done() else []
        if not self._active:
            await asyncio.sleep(0)  # requests parsed in the same turn of the loop still join
        deadline = time.perf_counter() + (self.max_wait if self._active else 0.0)
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


def _split(batch: list[_Pending], parts: int, smallest: int = 4) -> list[list[_Pending]]:
    """A batch as up to `parts` jobs of at least `smallest` queries: they run side by side on the cores. Texts of
    like length go together, so a job pads its token rows less."""
    n = max(1, min(parts, len(batch) // smallest))
    batch = sorted(batch, key=lambda p: len(p.text)) if n > 1 else batch
    size = -(-len(batch) // n)
    return [batch[i : i + size] for i in range(0, len(batch), size)]
