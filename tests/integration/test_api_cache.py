"""The Redis cache-aside of GET /products/{id} against the real stack: HITs are the stored bytes,
single flight, the stale-cache race, and the API's behaviour while Redis or PostgreSQL is down."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from catalogue.cache import (
    INVALIDATION_CHANNEL,
    Lookup,
    ProductCache,
    frame,
    product_key,
    unframe,
)
from catalogue.product_json import render_product
from db import products as db_products
from server.app import create_app
from server.keys import CACHE
from testkit.products import finish_processing

from .conftest import stack, wait_for

pytestmark = pytest.mark.integration

CONCURRENT_READERS = 50


async def create_product(api, user_id: str, **fields) -> int:
    body = {
        "user_id": user_id,
        "product_name": "Kettle",
        "product_description": "Boils water",
        "product_images": ["https://images.example.com/kettle.jpg"],
        "product_price": 35.5,
        **fields,
    }
    response = await api.post("/products", json=body)
    assert response.status == 201, await response.text()
    return int((await response.json())["product_id"])


class GatedLoads:
    """Wraps db.products.get_product (the real query still runs): counts calls, and holds each
    caller after its read until `release` is set."""

    def __init__(self) -> None:
        self.real = db_products.get_product
        self.calls = 0
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, conn, product_id):
        self.calls += 1
        row = await self.real(conn, product_id)
        self.read_done.set()
        await self.release.wait()
        return row


async def test_a_hit_returns_exactly_the_bytes_stored_in_redis(api, user, redis_client):
    product_id = await create_product(api, user["user_id"])
    stored = unframe(await redis_client.get(product_key(product_id)))
    assert stored

    response = await api.get(f"/products/{product_id}")
    assert response.headers["X-Cache"] == "HIT"
    assert await response.read() == stored

    # The HIT path serves whatever a writer stored, byte for byte: it does not re-serialise.
    # Writers announce new values on the invalidation channel (as ProductCache.put_fresh does),
    # which drops the API process's local copy.
    marker = stored.replace(b'"Kettle"', b'"Kettle from Redis"')
    await redis_client.set(product_key(product_id), frame(1, marker))
    await redis_client.publish(INVALIDATION_CHANNEL, str(product_id))

    async def marker_served() -> bool:
        response = await api.get(f"/products/{product_id}")
        assert response.headers["X-Cache"] == "HIT"
        return await response.read() == marker

    await wait_for(marker_served, timeout_s=10)


async def test_a_miss_stores_the_body_with_the_ttl(api, user, redis_client, settings):
    product_id = await create_product(api, user["user_id"])
    await redis_client.delete(product_key(product_id))
    response = await api.get(f"/products/{product_id}")
    assert response.headers["X-Cache"] == "MISS"
    assert unframe(await redis_client.get(product_key(product_id))) == await response.read()
    ttl = await redis_client.ttl(product_key(product_id))
    assert settings.cache_ttl_seconds - 5 <= ttl <= settings.cache_ttl_seconds


async def test_concurrent_misses_for_one_id_read_the_database_once(
    api, user, redis_client, monkeypatch
):
    product_id = await create_product(api, user["user_id"])
    await redis_client.delete(product_key(product_id))

    loads = GatedLoads()
    monkeypatch.setattr(db_products, "get_product", loads)
    cache = api.app[CACHE]
    real_get = cache.get_versioned
    misses = 0

    async def counting_get(pid: int):
        nonlocal misses
        result = await real_get(pid)
        misses += result is Lookup.MISS
        return result

    monkeypatch.setattr(cache, "get_versioned", counting_get)

    requests = [
        asyncio.ensure_future(api.get(f"/products/{product_id}")) for _ in range(CONCURRENT_READERS)
    ]

    async def all_missed() -> bool:
        return misses == CONCURRENT_READERS

    try:
        # Every request has seen the miss (and so joined the load) before the load may finish.
        await wait_for(all_missed, timeout_s=10)
    finally:
        loads.release.set()
    responses = await asyncio.gather(*requests)

    assert loads.calls == 1
    assert {r.status for r in responses} == {200}
    assert {r.headers["X-Cache"] for r in responses} == {"MISS"}
    bodies = {await r.read() for r in responses}
    assert len(bodies) == 1
    assert unframe(await redis_client.get(product_key(product_id))) == bodies.pop()


async def test_a_reader_holding_an_old_row_cannot_overwrite_the_workers_fresh_value(
    api, user, db, redis_client, settings, monkeypatch
):
    product_id = await create_product(api, user["user_id"])
    await redis_client.delete(product_key(product_id))

    loads = GatedLoads()
    monkeypatch.setattr(db_products, "get_product", loads)
    cache = api.app[CACHE]
    real_fill = cache.fill
    fills: list[bool] = []

    async def recording_fill(pid: int, version: int, body: bytes) -> bool:
        fills.append(await real_fill(pid, version, body))
        return fills[-1]

    monkeypatch.setattr(cache, "fill", recording_fill)

    readers = [
        asyncio.ensure_future(api.get(f"/products/{product_id}")) for _ in range(CONCURRENT_READERS)
    ]
    try:
        # The readers' load has read the row while it was still pending…
        await asyncio.wait_for(loads.read_done.wait(), 10)
        # …then the worker finishes the product and writes the fresh value, as it does.
        fresh_row = await finish_processing(
            db, product_id, urls=[f"https://cdn.example.com/{product_id}/0.jpg"]
        )
        fresh = render_product(fresh_row)
        worker_cache = ProductCache(
            redis_client,
            ttl_s=settings.cache_ttl_seconds,
            negative_ttl_s=settings.cache_negative_ttl_seconds,
        )
        assert await worker_cache.put_fresh(product_id, fresh_row["version"], fresh)
    finally:
        loads.release.set()  # …and only now do the readers try to fill the cache.
    responses = await asyncio.gather(*readers)

    assert {r.status for r in responses} == {200}
    # The race was real: the readers answered the old row…
    assert {(await r.json())["processing_status"] for r in responses} == {"pending"}
    # …but the cache holds the worker's value, and that is what the next reader gets.
    assert unframe(await redis_client.get(product_key(product_id))) == fresh
    # The readers did try to cache their old row (once: single flight); SET NX refused it.
    assert fills == [False]
    response = await api.get(f"/products/{product_id}")
    assert response.headers["X-Cache"] == "HIT"
    assert await response.read() == fresh
    body = await response.json()
    assert body["processing_status"] == "done"
    assert body["compressed_product_images"] == [f"https://cdn.example.com/{product_id}/0.jpg"]


async def test_the_creators_first_value_never_replaces_the_workers_result_that_landed_first(
    api, user, db, redis_client, settings, monkeypatch
):
    """Once the row commits, its job is on its way: a fast worker (an image failing at once)
    can store the processed product before POST stores the pending one."""
    cache = api.app[CACHE]
    real_put_new = cache.put_new
    worker_cache = ProductCache(
        redis_client,
        ttl_s=settings.cache_ttl_seconds,
        negative_ttl_s=settings.cache_negative_ttl_seconds,
    )
    stored: list[bool] = []
    fresh: list[bytes] = []

    async def worker_first(product_id: int, version: int, body: bytes) -> bool:
        row = await finish_processing(db, product_id)
        fresh.append(render_product(row))
        assert await worker_cache.put_fresh(product_id, row["version"], fresh[0])
        stored.append(await real_put_new(product_id, version, body))
        return stored[-1]

    monkeypatch.setattr(cache, "put_new", worker_first)
    product_id = await create_product(api, user["user_id"])

    assert stored == [False]
    assert unframe(await redis_client.get(product_key(product_id))) == fresh[0]
    response = await api.get(f"/products/{product_id}")
    assert response.headers["X-Cache"] == "HIT"
    assert (await response.json())["processing_status"] == "failed"


async def test_a_request_waits_for_a_busy_pool_only_so_long_then_gets_a_503(
    user, redis_client, settings, monkeypatch
):
    """asyncpg's pool shortcuts would queue without limit; DB_ACQUIRE_TIMEOUT_SECONDS bounds it."""
    app = create_app(replace(settings, db_pool_max_size=1, db_acquire_timeout_seconds=0.2))
    client = TestClient(TestServer(app))
    await client.start_server()
    loads = GatedLoads()
    try:
        product_id = await create_product(client, user["user_id"])
        await redis_client.delete(product_key(product_id))
        monkeypatch.setattr(db_products, "get_product", loads)
        holder = asyncio.ensure_future(client.get(f"/products/{product_id}"))
        await asyncio.wait_for(loads.read_done.wait(), 10)  # it holds the only connection
        response = await client.get("/products", params={"user_id": user["user_id"]})
        assert response.status == 503, await response.text()
        assert response.headers["Retry-After"] == "1"
        loads.release.set()
        assert (await holder).status == 200
    finally:
        loads.release.set()
        await client.close()


async def test_reads_and_writes_work_while_redis_is_down_and_caching_resumes(
    api, user, redis_client
):
    product_id = await create_product(api, user["user_id"], product_name="Before the outage")
    await asyncio.to_thread(stack, "down", "redis")
    try:
        response = await api.get(f"/products/{product_id}")
        assert response.status == 200
        assert response.headers["X-Cache"] == "BYPASS"
        assert (await response.json())["product_name"] == "Before the outage"

        started = time.monotonic()
        created = await api.post(
            "/products",
            json={
                "user_id": user["user_id"],
                "product_name": "During the outage",
                "product_price": 1,
            },
        )
        assert created.status == 201
        assert time.monotonic() - started < 5
        new_id = (await created.json())["product_id"]

        response = await api.get(f"/products/{new_id}")
        assert response.status == 200
        assert response.headers["X-Cache"] == "BYPASS"
        assert (await response.json())["product_name"] == "During the outage"

        readiness = await api.get("/readyz")
        assert readiness.status == 503
        assert "redis" in (await readiness.json())["message"]
    finally:
        await asyncio.to_thread(stack, "up", "redis")

    async def cached_again() -> bool:
        response = await api.get(f"/products/{new_id}")
        assert response.status == 200
        return response.headers["X-Cache"] in ("MISS", "HIT")

    await wait_for(cached_again, timeout_s=15)
    response = await api.get(f"/products/{new_id}")
    assert response.headers["X-Cache"] == "HIT"
    assert unframe(await redis_client.get(product_key(int(new_id)))) == await response.read()


async def test_cached_products_are_served_while_postgres_is_down_and_the_api_recovers(
    api, user, redis_client
):
    cached_id = await create_product(api, user["user_id"], product_name="Cached")
    uncached_id = await create_product(api, user["user_id"], product_name="Not cached")
    assert (await api.get(f"/products/{cached_id}")).headers["X-Cache"] == "HIT"
    await redis_client.delete(product_key(uncached_id))
    new_product = {"user_id": user["user_id"], "product_name": "Later", "product_price": 2}

    await asyncio.to_thread(stack, "down", "postgres")
    try:
        response = await api.get(f"/products/{cached_id}")
        assert response.status == 200
        assert response.headers["X-Cache"] == "HIT"
        assert (await response.json())["product_name"] == "Cached"

        started = time.monotonic()
        response = await api.get(f"/products/{uncached_id}")
        assert response.status == 503
        assert time.monotonic() - started < 10
        body = await response.json()
        assert body["status"] == "error"
        assert "database" in body["message"]

        started = time.monotonic()
        response = await api.post("/products", json=new_product)
        assert response.status == 503
        assert time.monotonic() - started < 10
        assert (await response.json())["status"] == "error"

        # An id never seen is not answered with a 404 (nor cached as one) while PostgreSQL is away.
        assert await redis_client.exists(product_key(uncached_id)) == 0
    finally:
        await asyncio.to_thread(stack, "up", "postgres")

    async def recovered() -> bool:
        response = await api.post(
            "/products", json={**new_product, "product_name": f"Later {uuid.uuid4().hex[:6]}"}
        )
        assert response.status in (201, 503), await response.text()
        return response.status == 201

    await wait_for(recovered, timeout_s=30)
    response = await api.get(f"/products/{uncached_id}")
    assert response.status == 200
    assert (await response.json())["product_name"] == "Not cached"
