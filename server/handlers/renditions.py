"""GET /products/{id}/images/{n}?w=WIDTH&format=…: a redirect to the rendition of image n that
fits the width and the client's formats (server/rendition_choice.py), so a plain
`<img src=".../images/0?w=640">` works in every browser."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from catalogue.cache import NOT_FOUND
from catalogue.product_json import is_owned_by
from server.callers import public_reads
from server.errors import ApiError
from server.keys import CALLER, PRODUCT_READS
from server.rendition_choice import choose, parse_format, parse_index, parse_width, renditions_of
from server.validation import parse_id

# The redirect's target changes whenever the product does (a reprocess, new sizes or formats, a
# change of its images), while the URL asked for stays: caches may keep the answer but must ask
# again each time (no-cache), never reuse it for a while, as max-age would let them. The
# targets themselves are content-addressed and immutable (GET /images/ caches them for a year),
# so the one round trip this costs a browser is for a few hundred bytes.
_REDIRECT_HEADERS = {"Cache-Control": "no-cache", "Vary": "Accept"}
# Why an image has no renditions, by its status.
_NO_RENDITIONS = {
    "pending": "it is still being processed",
    "failed": "its processing failed",
    "ready": "it was processed before renditions were made (a reprocess makes them)",
}


async def _product(request: web.Request, product_id: int) -> dict[str, Any]:
    """The product as GET /products/{id} reads it (memory, Redis, PostgreSQL) and may show it:
    to a user's key another user's product is 404 exactly like a missing one."""
    reads = request.app[PRODUCT_READS]
    body = reads.from_memory(product_id)
    if body is None:
        body, _ = await reads.read(product_id)
    caller = request.get(CALLER)
    owns = caller.owns if caller is not None else b""
    hidden = bool(owns) and not is_owned_by(body, owns) and not public_reads(request)
    if body == NOT_FOUND or hidden:
        raise ApiError(404, f"product {product_id} not found")
    product: dict[str, Any] = orjson.loads(body)
    return product


async def get_product_image(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    index = parse_index(request.match_info["n"])
    query = request.rel_url.query
    width = parse_width(query.get("w"))
    fmt = parse_format(query.get("format"))
    images = (await _product(request, product_id))["images"]
    if index is None or index >= len(images):
        which = "at that index" if index is None else str(index)  # None: too many digits
        raise ApiError(404, f"product {product_id} has no image {which}", {"field": "n"})
    entry = images[index]
    renditions = renditions_of(entry)
    if not renditions:
        # Pending (its first processing still running), failed without an output, or ready
        # from before renditions were made: nothing to redirect to.
        status = entry.get("status")
        why = _NO_RENDITIONS.get(status, _NO_RENDITIONS["ready"])
        raise ApiError(
            404,
            f"image {index} of product {product_id} has no renditions yet: {why}",
            {"field": "n", "status": status, "error": entry.get("error")},
        )
    chosen = choose(renditions, width=width, fmt=fmt, accept=request.headers.get("Accept"))
    if chosen is None:  # only with format=: the negotiated format is always one produced
        produced = sorted({r.format for r in renditions})
        raise ApiError(
            404,
            f"image {index} of product {product_id} has no {fmt} renditions "
            f"(it has {', '.join(produced)})",
            {"field": "format", "produced": produced},
        )
    return web.Response(status=302, headers={"Location": chosen.url, **_REDIRECT_HEADERS})
