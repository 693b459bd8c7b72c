"""The answer of GET /products/{id}/events: the product's JSON as a Server-Sent Event each time
it changes, until it is deleted, the client leaves or the application shuts down.

    retry: 2000                     once, how long a client waits before reconnecting
    event: product                  the current product, then each newer version
    id: <version>                   what the client sends back as Last-Event-ID
    data: <the JSON GET answers>    one line: orjson escapes the line breaks of strings
    event: deleted                  the product is gone: the stream ends after it
    data: {"product_id":"<id>"}
    :                               a comment every KEEPALIVE_S, so proxies keep the connection

Each wake-up from the hub (server/product_events.py) re-reads the row from PostgreSQL, never a
cache that may not have heard of the change yet, and sends it only if its version is newer
than the last one sent: the hub's notifications are hints, the row's version is the truth.

A client that leaves is noticed at the next write (aiohttp does not cancel handlers when a
connection drops), at the latest the next keep-alive; its watch ends with the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from server import sse
from server.middleware import DATABASE_UNAVAILABLE
from server.product_events import ProductEvents

log = logging.getLogger(__name__)

# A module constant (read at each wait) so tests can shorten it: proxies commonly drop a
# connection idle for 30-60 s, and a client that left is noticed at the next write.
KEEPALIVE_S = 15.0
RETRY_MS = 2000
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on, do not buffer the stream
}
PRODUCT, DELETED = "product", "deleted"

# The product's version and JSON as PostgreSQL holds them now; None once it is gone.
Load = Callable[[], Awaitable[tuple[int, bytes] | None]]


class ProductStream(web.StreamResponse):
    """Streams from `prepare`, as aiohttp's FileResponse sends its file there: the handler
    returns it unprepared, so the headers the middleware adds to every answer (X-Request-ID,
    the RateLimit fields) go out with it."""

    def __init__(
        self,
        hub: ProductEvents,
        product_id: int,
        load: Load,
        *,
        last_event_id: int | None,
        request_id: str,
    ) -> None:
        super().__init__(headers=HEADERS)
        self._hub = hub
        self._product_id = product_id
        self._load = load
        self._last_event_id = last_event_id
        self._request_id = request_id
        self._events = 0

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        started = time.monotonic()
        # Watching before the first read: a change committed after it wakes this stream.
        with self._hub.watch(self._product_id) as changed:
            writer = None
            try:
                writer = await super().prepare(request)
                ended = await self._stream(changed)
            except ConnectionError:  # the client left (aiohttp's reset errors are ones)
                ended = "client_left"
            except DATABASE_UNAVAILABLE as exc:
                # Ended, not hung: the client reconnects with Last-Event-ID and gets a 503
                # until PostgreSQL is back.
                log.warning(
                    "events.database_unavailable",
                    extra={"request_id": self._request_id, "error": repr(exc)},
                )
                ended = "database_unavailable"
        log.info(
            "events.stream_ended",
            extra={
                "product_id": self._product_id,
                "reason": ended,
                "events": self._events,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
                "request_id": self._request_id,
            },
        )
        return writer

    async def _stream(self, changed: asyncio.Event) -> str:
        """Sends versions until the stream ends; why it ended."""
        hub = self._hub
        await self.write(sse.retry(RETRY_MS))
        have = self._last_event_id  # the version the client holds, if it said
        first = True
        while not hub.closing:
            changed.clear()  # before the read: a change committed after it sets it again
            current = await self._load()
            if current is None:
                deleted = orjson.dumps({"product_id": str(self._product_id)})
                await self._send(sse.frame(deleted, event=DELETED))
                return "deleted"
            version, body = current
            # On connect, anything but the version the client has (a Last-Event-ID from
            # elsewhere must not hold the stream back); later, only newer versions.
            if (version != have) if first else (have is None or version > have):
                await self._send(sse.frame(body, event=PRODUCT, id=str(version)))
                have = version
            first = False
            await self._wait(changed)
        return "shutdown"

    async def _wait(self, changed: asyncio.Event) -> None:
        """Until `changed` is set, with a keep-alive comment every KEEPALIVE_S."""
        while not changed.is_set():
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await changed.wait()
            except TimeoutError:
                await self.write(sse.comment())

    async def _send(self, frame: bytes) -> None:
        await self.write(frame)
        self._events += 1
