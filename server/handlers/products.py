"""POST /products, GET /products/{id}, GET /products."""

from __future__ import annotations

from aiohttp import web

from catalogue.cache import NOT_FOUND
from catalogue.product_json import is_owned_by, render_products
from db import products
from server.access import spend_image_quota
from server.body import read_json
from server.callers import acting_for, caller_of, idempotent, public_reads
from server.database import connection
from server.errors import error_response
from server.etags import etag_of, none_match
from server.handlers.users import answer
from server.keys import CALLER, PRODUCT_READS, PRODUCT_WRITES, SETTINGS
from server.product_reads import HIT
from server.validation import (
    decode_cursor,
    encode_cursor,
    parse_id,
    parse_limit,
    parse_name_filter,
    parse_new_product,
    parse_price_range,
)

JSON = "application/json"


async def create_product(request: web.Request) -> web.Response:
    body = await read_json(request)
    new = parse_new_product(
        body,
        request.app[SETTINGS].max_images_per_product,
        user_id_required=caller_of(request) is None,
    )
    user_id = acting_for(request, new.user_id)

    async def charge() -> None:
        await spend_image_quota(request, len(new.images))

    # With an Idempotency-Key the images are charged only if the create runs (not for a
    # replay), inside its transaction (a refusal records nothing).
    context = idempotent(request, body, charge=charge)
    if context is None:
        await charge()
    return answer(await request.app[PRODUCT_WRITES].create(new, user_id, context))


def _product(request: web.Request, body: bytes, product_id: int, x_cache: str) -> web.Response:
    caller = request.get(CALLER)
    owns = caller.owns if caller is not None else b""
    # To a user's key, another user's product answers exactly like one that does not exist,
    # headers included (X-Cache would tell a cached product from an unknown id), so ids cannot
    # be probed. Admins, PRODUCT_READS=public and AUTH_MODE=off see every product.
    if owns and (body == NOT_FOUND or not is_owned_by(body, owns)) and not public_reads(request):
        return error_response(404, f"product {product_id} not found")
    if body == NOT_FOUND:
        return error_response(404, f"product {product_id} not found", None, {"X-Cache": x_cache})
    etag = etag_of(body)
    if none_match(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers={"ETag": etag, "X-Cache": x_cache})
    # The stored bytes are the response: no re-serialisation.
    return web.Response(body=body, headers={"Content-Type": JSON, "X-Cache": x_cache, "ETag": etag})


async def get_product(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    reads = request.app[PRODUCT_READS]
    body = reads.from_memory(product_id)
    if body is not None:
        return _product(request, body, product_id, HIT)
    body, x_cache = await reads.read(product_id)
    return _product(request, body, product_id, x_cache)


async def list_products(request: web.Request) -> web.Response:
    query = request.rel_url.query
    named = parse_id(query["user_id"], "user_id") if "user_id" in query else None
    user_id = acting_for(request, named, reading=True)
    low = high = None
    if query.get("price_range"):
        low, high = parse_price_range(query["price_range"])
    limit = parse_limit(query.get("limit"))
    filters = products.ListFilter(
        user_id=user_id,
        min_price=low,
        max_price=high,
        name_contains=parse_name_filter(query.get("product_name")),
        before_id=decode_cursor(query["cursor"]) if "cursor" in query else None,
        # One row more than asked tells whether a next page exists.
        limit=limit + 1,
    )
    async with connection(request) as conn:
        rows = await products.list_products(conn, filters)
    headers = {"Content-Type": JSON}
    if len(rows) > limit:
        rows = rows[:limit]
        next_url = request.rel_url.update_query(cursor=encode_cursor(rows[-1]["id"]))
        headers["Link"] = f'<{next_url}>; rel="next"'
    return web.Response(body=render_products(rows), headers=headers)
