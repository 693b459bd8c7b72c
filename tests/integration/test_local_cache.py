"""The in-process cache in front of Redis stays coherent across API processes: a worker's fresh
value reaches every process's readers, through Redis pub/sub invalidation."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from catalogue import image_state
from catalogue.cache import ProductCache, connect
from catalogue.product_json import render_product
from db import products
from server import invalidation
from server.app import create_app
from server.keys import LOCAL_CACHE
from server.local_cache import LocalCache

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

    # What the worker does when it finishes: its outcomes land in one transaction, then the
    # fresh value goes into the cache under the row's new version.
    async with db.acquire() as conn, conn.transaction():
        locked = await products.lock_images(conn, product_id)
        outcome = image_state.Outcome(
            "http://127.0.0.1:1/vase.jpg", url="http://cdn.test/v.jpg", key="products/v.jpg"
        )
        change = image_state.apply_outcomes(
            orjson.loads(locked["images"]), locked["images_revision"], [outcome]
        )
        assert change is not None
        row = await products.save_images(
            conn,
            product_id,
            change.entries,
            status=image_state.processing_status(change.entries),
            revision=locked["images_revision"],
        )
    worker_cache = ProductCache(connect(settings.redis_url), ttl_s=60, negative_ttl_s=5)
    try:
        assert await worker_cache.put_fresh(product_id, row["version"], render_product(row))
    finally:
        await worker_cache.client.aclose()

    for client in (api, second_api):

        async def fresh(client=client) -> bool:
            response = await client.get(f"/products/{product_id}")
            return (await response.json())["processing_status"] == "done"

        await wait_for(fresh, timeout_s=5, interval_s=0.01)


class FreezingProxy:
    """Forwards loopback TCP to Redis until frozen: then it keeps every connection open and
    forwards nothing, like a peer that vanished without a FIN or RST. New connections after
    that are forwarded again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen: set[asyncio.StreamWriter] = set()
        self.live: list[asyncio.StreamWriter] = []
        self.upstream: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.live.append(writer)
        self.upstream.append(up_writer)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if writer in self.frozen:
                    continue  # swallowed: the other side hears nothing, ever
                sink.write(data)
                await sink.drain()

        try:
            with contextlib.suppress(ConnectionError):
                await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            for end in (up_writer, writer):
                end.close()
                with contextlib.suppress(ConnectionError):
                    await end.wait_closed()

    def freeze(self) -> None:
        self.frozen.update(self.live)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in [*self.live, *self.upstream]:
            writer.close()  # ends both pumps of every connection
        await self.server.wait_closed()


async def test_a_subscription_that_dies_silently_is_noticed_and_replaced(stack_env, monkeypatch):
    monkeypatch.setattr(invalidation, "IDLE_CHECK_S", 0.1)
    monkeypatch.setattr(invalidation, "SILENCE_LIMIT_S", 0.5)
    redis_url = stack_env["REDIS_URL"]
    proxy = FreezingProxy(int(redis_url.rsplit(":", 1)[1].split("/", 1)[0]))
    port = await proxy.start()
    local = LocalCache(ttl_s=30, max_items=10)
    listener = asyncio.create_task(
        invalidation.listen_for_invalidations(f"redis://127.0.0.1:{port}/0", local)
    )
    try:

        async def enabled() -> bool:
            return local.enabled

        async def disabled() -> bool:
            return not local.enabled

        await wait_for(enabled, timeout_s=10)
        proxy.freeze()
        await wait_for(disabled, timeout_s=10)  # the local cache stops trusting it…
        await wait_for(enabled, timeout_s=10)  # …and a new subscription takes over
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await proxy.close()
