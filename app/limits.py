"""Per-route concurrency limits for the heavy routes, as FastAPI dependencies.

At most `slots` requests of a route do their work at once and `queue` more wait for a slot; any more are
refused at once with 429 and `Retry-After`, instead of queueing without bound. One event loop serves an
app, so the counter needs no lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audiosearch.app.settings import Settings


class Limit:
    def __init__(self, what: str, slots: int, queue: int, retry_after_s: int) -> None:
        self.what, self.slots, self.queue, self.retry_after_s = what, slots, queue, retry_after_s
        self.admitted = 0  # running + waiting
        self._free = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self.admitted >= self.slots + self.queue:
            raise HTTPException(
                429,
                f"too many {self.what} requests at once ({self.slots} run, {self.queue} wait); "
                f"retry after {self.retry_after_s} s",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.admitted += 1
        try:
            async with self._free:
                yield
        finally:
            self.admitted -= 1


def make_limits(s: Settings) -> dict[str, Limit]:
    # Retry-After: about how long one request of the route takes on a small machine.
    return {
        "by_audio": Limit("query-by-example", s.concurrent_by_audio, s.concurrent_by_audio, 2),
        "batch": Limit("batch search", s.concurrent_batch, 2 * s.concurrent_batch, 1),
        "eval": Limit("evaluation", s.concurrent_eval, 0, 30),  # no queue: one evaluation may take minutes
        # Text searches are light, but each waits in the batcher's queue: bounded here, not by the client count.
        "search": Limit("text search", s.concurrent_search, 0, 1),
    }


def limited(name: str) -> Any:
    """A route dependency that holds one of the app's `name` slots while the request is handled."""

    async def hold(request: Request) -> AsyncIterator[None]:
        async with request.app.state.limits[name].hold():
            yield

    return Depends(hold)


class JsonTooLarge:
    """FastAPI's body limit answers 413 in plain text; the API's errors are JSON `{"detail"}` (hand-written:
    a translation of that one response, which the limit sends itself, past any exception handler)."""

    def __init__(self, app: ASGIApp, upload_path: str, upload_limit: int, limit: int) -> None:
        self.app, self.upload_path, self.upload_limit, self.limit = app, upload_path, upload_limit, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] == self.upload_path else self.limit
        rewriting = False

        body = b""

        async def send_json(message: Message) -> None:
            nonlocal rewriting, body
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = Headers(raw=message["headers"])
                rewriting = headers.get("content-type", "").startswith("text/plain")
                if rewriting:
                    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
                    message = {
                        **message,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
            elif message["type"] == "http.response.body" and rewriting:
                message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        await self.app(scope, receive, send_json)
