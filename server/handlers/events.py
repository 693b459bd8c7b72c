"""GET /products/{id}/events: the product as Server-Sent Events (server/product_stream.py).

The access rules are GET /products/{id}'s: the route is a read (server/app.py), so the same key
check and read budget apply, and to a user's key another user's product is 404 exactly like a
missing one. Everything that can refuse the request is decided here, before the stream starts.
"""

from __future__ import annotations

from aiohttp import web

from catalogue.product_json import is_owned_by, render_product
from db import products
from server.callers import public_reads
from server.database import connection
from server.errors import ApiError
from server.keys import CALLER, PRODUCT_EVENTS, REQUEST_ID
from server.product_stream import ProductStream
from server.validation import parse_id, parse_last_event_id


def _hidden(request: web.Request, body: bytes) -> bool:
    """Another user's product, to a user's key (as GET /products/{id} decides)."""
    caller = request.get(CALLER)
    owns = caller.owns if caller is not None else b""
    return bool(owns) and not is_owned_by(body, owns) and not public_reads(request)


async def product_events(request: web.Request) -> web.StreamResponse:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    last_event_id = parse_last_event_id(request.headers.get("Last-Event-ID"))
    hub = request.app[PRODUCT_EVENTS]

    async def load() -> tuple[int, bytes] | None:
        async with connection(request) as conn:
            row = await products.get_product(conn, product_id)
        return None if row is None else (row["version"], render_product(row))

    current = await load()
    if current is None or _hidden(request, current[1]):
        raise ApiError(404, f"product {product_id} not found")
    # After the last await: nothing runs between this check and the stream's watch (aiohttp
    # prepares the answer as soon as the handler returns), so the bound holds exactly.
    if hub.closing:
        raise ApiError(503, "shutting down; reconnect", None, {"Retry-After": "1"})
    if hub.full:
        raise ApiError(
            503,
            f"too many open event streams ({hub.max_streams}); retry shortly",
            {"max_streams": hub.max_streams},
            {"Retry-After": "1"},
        )
    return ProductStream(
        hub, product_id, load, last_event_id=last_event_id, request_id=request[REQUEST_ID]
    )
