"""POST /products, GET /products/{id}, GET /products."""

from __future__ import annotations

from aiohttp import web

from catalogue.cache import NOT_FOUND
from catalogue.product_json import render_products
from db import products
from server.body import read_json
from server.database import connection
from server.errors import ApiError, bad_request, error_response
from server.keys import PRODUCT_READS, PRODUCT_WRITES, SETTINGS
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
_CREATED = {"status": "success", "message": "Product created successfully"}


async def create_product(request: web.Request) -> web.Response:
    new = parse_new_product(await read_json(request), request.app[SETTINGS].max_images_per_product)
    try:
        product_id = str(await request.app[PRODUCT_WRITES].create(new))
    except products.UnknownUser:
        raise ApiError(422, f"user {new.user_id} does not exist", {"field": "user_id"}) from None
    return web.json_response(
        {**_CREATED, "product_id": product_id},
        status=201,
        headers={"Location": f"/products/{product_id}"},
    )


def _product(body: bytes, product_id: int, x_cache: str) -> web.Response:
    if body == NOT_FOUND:
        return error_response(404, f"product {product_id} not found", None, {"X-Cache": x_cache})
    # The stored bytes are the response: no re-serialisation.
    return web.Response(body=body, headers={"Content-Type": JSON, "X-Cache": x_cache})


async def get_product(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    reads = request.app[PRODUCT_READS]
    body = reads.from_memory(product_id)
    if body is not None:
        return _product(body, product_id, HIT)
    body, x_cache = await reads.read(product_id)
    return _product(body, product_id, x_cache)


async def list_products(request: web.Request) -> web.Response:
    query = request.rel_url.query
    if "user_id" not in query:
        raise bad_request("user_id is required", "user_id")
    low = high = None
    if query.get("price_range"):
        low, high = parse_price_range(query["price_range"])
    limit = parse_limit(query.get("limit"))
    filters = products.ListFilter(
        user_id=parse_id(query["user_id"], "user_id"),
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
