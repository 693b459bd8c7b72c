"""The in-process cache in front of Redis stays coherent across API processes: a worker's fresh
value reaches every process's readers, through Redis pub/sub invalidation."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from db import products
from server.app import create_app
from server.cache import ProductCache, connect
from server.keys import LOCAL_CACHE

from .conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def second_api(settings):
    """Another API process's worth of state: its own local cache and subscription."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


async def subscribed(api) -> None:
    async def enabled() -> bool:
        return api.server.app[LOCAL_CACHE].enabled

    await wait_for(enabled, timeout_s=10)


async def test_a_fresh_value_replaces_the_local_copies_in_every_process(
    api, second_api, user, db, settings
):
    for client in (api, second_api):
        await subscribed(client)
    created = await api.post(
        "/products",
        json={
            "user_id": user["user_id"],
            "product_name": "Vase",
            "product_price": 3,
            "product_images": ["http://127.0.0.1:1/vase.jpg"],
        },
    )
    product_id = int((await created.json())["product_id"])
    for client in (api, second_api):
        body = await (await client.get(f"/products/{product_id}")).json()
        assert body["processing_status"] == "pending"
        assert client.server.app[LOCAL_CACHE].get(product_id) is not None  # held locally now

    # What the worker does when it finishes: one UPDATE, then the fresh value into the cache.
    row = await products.finish_processing(
        db, product_id, compressed_images=["http://cdn.test/v.jpg"], status="done", errors=[]
    )
    worker_cache = ProductCache(connect(settings.redis_url), ttl_s=60, negative_ttl_s=5)
    try:
        assert await worker_cache.put_fresh(product_id, products.render_product(row))
    finally:
        await worker_cache.client.aclose()

    for client in (api, second_api):

        async def fresh(client=client) -> bool:
            response = await client.get(f"/products/{product_id}")
            return (await response.json())["processing_status"] == "done"

        await wait_for(fresh, timeout_s=5, interval_s=0.01)
