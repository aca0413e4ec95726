"""A request's work in a worker thread that stops when its client goes away.

Starlette does not stop a handler whose client disconnected (only streaming responses notice), so a
long decode or evaluation would run on for nobody. Here the work gets a `check` callable that it calls
between blocks and batches; the handler polls the connection and, once the client is gone, `check` raises
`Cancelled` in the worker, and the handler waits for it to stop, so no work outlives its request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from audiosearch.core.errors import Cancelled

T = TypeVar("T")
POLL_S = 0.2  # how often the connection is looked at while the work runs
CLIENT_GONE = 499  # the status recorded (nginx's "client closed request"); the client never sees it


async def run_cancellable(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, check=check, **kwargs)` in the threadpool; `check` raises `Cancelled` once the client left."""
    stop = threading.Event()

    def check() -> None:
        if stop.is_set():
            raise Cancelled("the client disconnected")

    route = getattr(request.scope.get("route"), "path", request.url.path)
    in_flight = request.app.state.metrics.in_flight.labels(route)

    def work() -> T:
        in_flight.inc()
        try:
            return fn(*args, check=check, **kwargs)
        finally:
            in_flight.dec()

    task = asyncio.ensure_future(run_in_threadpool(work))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_S)
            if not task.done() and not stop.is_set() and await request.is_disconnected():
                stop.set()  # the worker stops at its next check; keep waiting for it
        return task.result()
    finally:
        stop.set()  # also when this handler is itself cancelled (server shutdown)
