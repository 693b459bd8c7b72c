"""GET /products/{id} over ProductReads, with no services: the in-process tier answers alone,
and what Redis answers is kept in memory for the next read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from catalogue.cache import NOT_FOUND, Lookup, ProductCache
from config import load_settings
from server.handlers import products
from server.keys import PRODUCT_READS
from server.local_cache import LocalCache
from server.product_reads import ProductReads
from server.version_floors import VersionFloors

BODY = b'{"product_id":"7"}'
Client = Callable[[web.Application], Awaitable[TestClient]]


class FakeRedis(ProductCache):
    """Answers `get_versioned` from a dict (every value at version 1) and counts the calls;
    nothing else may be used."""

    def __init__(self, stored: dict[int, bytes]) -> None:
        self.stored = stored
        self.gets = 0

    async def get_versioned(self, product_id: int) -> tuple[int, bytes] | Lookup:
        self.gets += 1
        body = self.stored.get(product_id)
        return Lookup.MISS if body is None else (1, body)


def serving(reads: ProductReads) -> web.Application:
    app = web.Application()
    app[PRODUCT_READS] = reads
    app.router.add_get("/products/{product_id}", products.get_product)
    return app


def reads_over(redis: FakeRedis) -> tuple[ProductReads, LocalCache]:
    local = LocalCache(ttl_s=60, max_items=10)
    local.enable()  # as a live invalidation subscription does
    reads = ProductReads(
        None,  # type: ignore[arg-type]  # no database: these reads must never reach one
        load_settings({}, dotenv=None),
        redis,
        local,
        VersionFloors(),
    )
    return reads, local


@pytest.mark.parametrize(("held", "status"), [(BODY, 200), (NOT_FOUND, 404)])
async def test_a_product_held_in_memory_is_answered_without_redis(
    aiohttp_client: Client, held: bytes, status: int
) -> None:
    redis = FakeRedis({})
    reads, local = reads_over(redis)
    local.put(7, held, local.epoch)
    client = await aiohttp_client(serving(reads))

    response = await client.get("/products/7")

    assert response.status == status
    assert response.headers["X-Cache"] == "HIT"
    if status == 200:
        assert await response.read() == BODY
    assert redis.gets == 0


async def test_a_redis_hit_is_kept_in_memory_for_the_next_read(aiohttp_client: Client) -> None:
    redis = FakeRedis({7: BODY})
    reads, local = reads_over(redis)
    client = await aiohttp_client(serving(reads))

    for _ in range(3):
        response = await client.get("/products/7")
        assert response.status == 200
        assert response.headers["X-Cache"] == "HIT"
        assert await response.read() == BODY
    assert redis.gets == 1
    assert local.get(7) == BODY
