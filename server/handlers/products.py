"""POST /products, GET /products/{id}, GET /products."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from catalogue.cache import NOT_FOUND, Lookup
from catalogue.jobs import ImageJob, encode_job, job_key
from catalogue.product_json import render_product, render_products
from db import products
from db.outbox import OutboxMessage
from server.body import read_json
from server.database import connection
from server.errors import ApiError, bad_request, error_response
from server.keys import CACHE, LOCAL_CACHE, PRODUCT_LOADS, SETTINGS
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
    settings = request.app[SETTINGS]
    new = parse_new_product(await read_json(request), settings.max_images_per_product)
    try:
        async with connection(request) as conn:
            product_id = await products.reserve_product_id(conn)
            row = await products.create_product(
                conn,
                product_id=product_id,
                user_id=new.user_id,
                name=new.name,
                description=new.description,
                images=new.images,
                price=new.price,
                job=_image_job(product_id, new.images, settings.kafka_jobs_topic),
            )
    except products.UnknownUser:
        raise ApiError(422, f"user {new.user_id} does not exist", {"field": "user_id"}) from None
    # Replaces a cached 404 for its id, but never the worker's result, which may be there first.
    await request.app[CACHE].put_new(row["id"], render_product(row))
    product_id = str(row["id"])
    return web.json_response(
        {**_CREATED, "product_id": product_id},
        status=201,
        headers={"Location": f"/products/{product_id}"},
    )


def _image_job(product_id: int, images: Sequence[str], topic: str) -> OutboxMessage | None:
    if not images:
        return None  # nothing to process: the product is created done
    payload = encode_job(ImageJob(product_id, tuple(images))).decode()
    return OutboxMessage(topic, job_key(product_id), payload)


def _not_found(product_id: int, cache: str) -> web.Response:
    return error_response(404, f"product {product_id} not found", None, {"X-Cache": cache})


def _hit(body: bytes, product_id: int) -> web.Response:
    if body == NOT_FOUND:
        return _not_found(product_id, "HIT")
    # The stored bytes are the response: no database, no re-serialisation.
    return web.Response(body=body, headers={"Content-Type": JSON, "X-Cache": "HIT"})


async def get_product(request: web.Request) -> web.Response:
    product_id = parse_id(request.match_info["product_id"], "product_id")
    local = request.app[LOCAL_CACHE]
    body = local.get(product_id)
    if body is not None:
        return _hit(body, product_id)
    epoch = local.epoch  # an invalidation after this point makes what we read unfit to keep
    cache = request.app[CACHE]
    cached = await cache.get(product_id)
    if isinstance(cached, bytes):
        local.put(product_id, cached, epoch)
        return _hit(cached, product_id)

    async def load() -> bytes:
        async with connection(request) as conn:
            row = await products.get_product(conn, product_id)
        body = NOT_FOUND if row is None else render_product(row)
        if cached is Lookup.MISS and await cache.fill(product_id, body):
            # Only what went into Redis goes into the local cache: if the fill lost to a
            # fresher value, ours is not worth keeping.
            local.put(product_id, body, epoch)
        return body

    body = await request.app[PRODUCT_LOADS].run(product_id, load)
    status = cached.value
    if body == NOT_FOUND:
        return _not_found(product_id, status)
    return web.Response(body=body, headers={"Content-Type": JSON, "X-Cache": status})


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
