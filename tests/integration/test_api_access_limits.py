"""Budgets on the real stack, within one API process: per key reads and writes, the image
quota, per address for requests without a (valid) key, admin exemption, the 429 and RateLimit
fields, and Redis away (a dead port, or a loopback proxy this test cuts).

One process is enough for these; that every process spends from the same budget is proven with
two real processes in test_api_access_processes.py. Budgets are written N/h so that no token
comes back while a test runs: the counts below are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from config.rates import Rate
from server.keys import GATE
from server.rate_limits import RateLimiter

from .conftest import wait_for
from .test_api_access import (  # noqa: F401 (no_key_in_the_logs: autouse)
    ADMIN,
    access_api,
    bearer,
    create_product,
    new_user,
    no_key_in_the_logs,
    sign_up,
)

pytestmark = pytest.mark.integration

RATE_FIELDS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
IMAGE = "https://images.example.com/{}.jpg"


def images(count: int) -> list[str]:
    return [IMAGE.format(uuid.uuid4().hex) for _ in range(count)]


def rate_fields(response: Any) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in RATE_FIELDS)
    return limit, remaining, reset


async def assert_429(response: Any) -> dict[str, Any]:
    assert response.status == 429, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "error"
    assert int(response.headers["Retry-After"]) >= 1
    rate_fields(response)  # present and integers
    return body


# -- per key -------------------------------------------------------------------------------------


async def test_a_keys_reads_past_its_budget_are_429_with_retry_after(settings):
    async with access_api(settings, rate_limit_reads=Rate(3, 3600.0)) as api:
        _, headers = await new_user(api)
        statuses = [(await api.get("/products", headers=headers)).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await api.get("/products", headers=headers)
        await assert_429(refused)
        assert int(refused.headers["Retry-After"]) <= 1200  # one read back: a third of an hour
        assert rate_fields(refused)[:2] == (3, 0)


async def test_each_key_has_its_own_read_budget(settings):
    async with access_api(settings, rate_limit_reads=Rate(2, 3600.0)) as api:
        _, first = await new_user(api)
        _, second = await new_user(api)
        for _ in range(2):
            assert (await api.get("/products", headers=first)).status == 200
        assert (await api.get("/products", headers=first)).status == 429
        assert (await api.get("/products", headers=second)).status == 200


async def test_a_keys_write_budget_is_apart_from_its_read_budget(settings):
    async with access_api(settings, rate_limit_writes=Rate(2, 3600.0)) as api:
        _, headers = await new_user(api)
        await create_product(api, headers)
        await create_product(api, headers)
        await assert_429(await api.post("/products", json={"x": 1}, headers=headers))
        assert (await api.get("/products", headers=headers)).status == 200


async def test_every_budgeted_answer_carries_the_ratelimit_fields(settings):
    async with access_api(settings, rate_limit_reads=Rate(5, 3600.0)) as api:
        _, headers = await new_user(api)
        remaining = []
        for _ in range(5):
            response = await api.get("/products", headers=headers)
            assert response.status == 200
            limit, left, reset = rate_fields(response)
            assert limit == 5
            assert 0 <= reset <= 3600
            remaining.append(left)
        assert remaining == [4, 3, 2, 1, 0]
        await assert_429(await api.get("/products/999999999", headers=headers))
    async with access_api(settings) as api:  # an error answer carries them too
        _, headers = await new_user(api)
        missing = await api.get("/products/999999999", headers=headers)
        assert missing.status == 404
        rate_fields(missing)


# -- the image quota -----------------------------------------------------------------------------


async def test_the_image_quota_refuses_a_create_whose_images_do_not_fit(settings, db):
    async with access_api(settings, image_quota_per_hour=3) as api:
        user_id, headers = await new_user(api)
        await create_product(api, headers, product_images=images(2))
        refused = await api.post(
            "/products",
            json={"product_name": "x", "product_price": 1, "product_images": images(2)},
            headers=headers,
        )
        await assert_429(refused)
        # All or nothing: the two that did not fit left the last one in the budget.
        await create_product(api, headers, product_images=images(1))
        await create_product(api, headers)  # no images, no charge
        count = await db.fetchval("SELECT count(*) FROM products WHERE user_id = $1", int(user_id))
        assert count == 3


async def test_an_image_quota_refusal_carries_the_image_budgets_fields(settings):
    async with access_api(settings, image_quota_per_hour=2) as api:
        _, headers = await new_user(api)
        await create_product(api, headers, product_images=images(2))
        refused = await api.post(
            "/products",
            json={"product_name": "x", "product_price": 1, "product_images": images(1)},
            headers=headers,
        )
        await assert_429(refused)
        limit, remaining, _ = rate_fields(refused)
        assert (limit, remaining) == (2, 0)  # the image budget's, not the write budget's
        assert int(refused.headers["Retry-After"]) > 60  # an image comes back every 30 minutes


async def test_each_key_has_its_own_image_quota(settings):
    async with access_api(settings, image_quota_per_hour=1) as api:
        _, first = await new_user(api)
        _, second = await new_user(api)
        await create_product(api, first, product_images=images(1))
        await create_product(api, first, expect=429, product_images=images(1))
        await create_product(api, second, product_images=images(1))


# -- per address ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def from_address(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections come from `address` (any of 127/8 is loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def test_requests_without_a_key_are_limited_per_client_address(settings):
    async with access_api(
        settings, product_reads="public", rate_limit_reads=Rate(2, 3600.0)
    ) as api:
        url = str(api.make_url("/products/999999999999"))
        async with from_address("127.0.0.1") as here, from_address("127.0.0.2") as there:
            for _ in range(2):
                async with here.get(url) as response:
                    assert response.status == 404
                    assert rate_fields(response)[0] == 2
            async with here.get(url) as response:
                await assert_429(response)
            async with there.get(url) as response:  # another address, its own budget
                assert response.status == 404


async def test_sign_ups_without_a_key_are_limited_per_client_address(settings):
    async with access_api(settings, rate_limit_writes=Rate(2, 3600.0)) as api:
        await sign_up(api)
        await sign_up(api)
        response = await api.post("/users", json={"username": "x", "email": "x@example.com"})
        await assert_429(response)
        await sign_up(api, ADMIN)  # the admin key is not limited


async def test_failed_authentication_spends_the_addresses_budget(settings):
    async with access_api(settings, rate_limit_reads=Rate(3, 3600.0)) as api:
        _, headers = await new_user(api)
        assert (await api.get("/products", headers=headers)).status == 200
        bad = bearer("catk_0123456789abcdef_" + "A" * 43)
        statuses = [(await api.get("/products", headers=bad)).status for _ in range(3)]
        assert statuses == [401, 401, 401]
        await assert_429(await api.get("/products", headers=bad))
        await assert_429(await api.get("/products", headers={"Authorization": "Basic x"}))
        await assert_429(await api.get("/products"))  # no key at all: the same address budget
        # A valid key from that address has its own budget.
        assert (await api.get("/products", headers=headers)).status == 200


async def test_an_address_over_its_budget_costs_no_key_lookup(settings):
    async with access_api(settings, rate_limit_reads=Rate(2, 3600.0)) as api:
        authenticator = api.app[GATE].authenticator
        loads = []
        load = authenticator._load_key

        async def counted(key_id: str) -> Any:
            loads.append(key_id)
            return await load(key_id)

        authenticator._load_key = counted
        for number in range(2):
            guess = bearer(f"catk_{number:016x}_" + "A" * 43)
            assert (await api.get("/products", headers=guess)).status == 401
        # The attempt that finds the budget spent is looked up (and refused, and the refusal
        # remembered); none after it is.
        for number in range(2, 12):
            guess = bearer(f"catk_{number:016x}_" + "A" * 43)
            await assert_429(await api.get("/products", headers=guess))
        assert len(loads) == 3


# -- admin ---------------------------------------------------------------------------------------


async def test_admin_keys_are_exempt_from_every_budget(settings):
    tight = {
        "rate_limit_reads": Rate(1, 3600.0),
        "rate_limit_writes": Rate(1, 3600.0),
        "image_quota_per_hour": 1,
    }
    async with access_api(settings, **tight) as api:
        user_id = (await sign_up(api, ADMIN))["user_id"]
        for _ in range(4):
            response = await api.post(
                "/products",
                json={
                    "user_id": user_id,
                    "product_name": "x",
                    "product_price": 1,
                    "product_images": images(2),
                },
                headers=ADMIN,
            )
            assert response.status == 201
            assert "RateLimit-Limit" not in response.headers
            listed = await api.get("/products", params={"user_id": user_id}, headers=ADMIN)
            assert listed.status == 200
            assert "RateLimit-Limit" not in listed.headers


# -- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_requests_of_one_key_share_one_lease_refill(settings):
    """Requests that find no lease at once wait for one refill instead of each leasing tokens
    of its own, which would spend the shared budget many times faster than they do."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        limiter = RateLimiter(client, share=1)
        rate = Rate(100, 3600.0)  # leases of 5
        bucket = f"test:{uuid.uuid4().hex}"
        verdicts = await asyncio.gather(*(limiter.take(bucket, rate) for _ in range(40)))
        assert all(v.allowed for v in verdicts)
        probe = await limiter.take(bucket, rate, 0, lease=False)
        assert probe.remaining == 60  # 40 requests spent 40 tokens: 8 leases of 5
    finally:
        await client.aclose()


async def test_concurrent_reads_of_one_key_within_its_budget_are_all_admitted(settings):
    async with access_api(settings, rate_limit_reads=Rate(100, 3600.0)) as api:
        _, headers = await new_user(api)
        responses = await asyncio.gather(
            *(api.get("/products", headers=headers) for _ in range(60))
        )
        assert [r.status for r in responses] == [200] * 60


# -- Redis away ----------------------------------------------------------------------------------


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once it is closed


async def test_with_redis_unreachable_each_process_keeps_its_share_and_nothing_is_500(settings):
    dead = f"redis://127.0.0.1:{dead_port()}/0"
    async with access_api(
        settings, redis_url=dead, api_workers=2, rate_limit_reads=Rate(8, 3600.0)
    ) as api:
        _, headers = await new_user(api)
        statuses = []
        for _ in range(6):
            response = await api.get("/products", headers=headers)
            statuses.append(response.status)
            assert rate_fields(response)[0] == 4  # the share: 8 / API_WORKERS
        assert statuses == [200] * 4 + [429] * 2
        product_id = (await create_product(api, headers))["product_id"]
        assert (await api.get("/products/" + product_id, headers=ADMIN)).status == 200


class CuttableProxy:
    """A loopback TCP proxy to Redis that the test can cut: every connection dropped, and new
    ones refused."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


async def test_when_redis_is_cut_mid_run_limits_fall_back_to_the_share_and_nothing_is_500(
    settings,
):
    host_port = settings.redis_url.split("//", 1)[1].split("/", 1)
    host, port = host_port[0].rsplit(":", 1)
    proxy = CuttableProxy(host, int(port))
    proxy_port = await proxy.start()
    proxied = f"redis://127.0.0.1:{proxy_port}/{host_port[1]}"
    async with access_api(
        settings, redis_url=proxied, api_workers=2, rate_limit_reads=Rate(40, 3600.0)
    ) as api:
        _, headers = await new_user(api)
        shared = await api.get("/products", headers=headers)
        assert shared.status == 200
        assert rate_fields(shared)[0] == 40  # Redis answers: the whole budget, shared
        await proxy.cut()

        async def on_its_share() -> bool:
            response = await api.get("/products", headers=headers)
            assert response.status in (200, 429), await response.text()
            return rate_fields(response)[0] == 20  # 40 / API_WORKERS

        await wait_for(on_its_share, timeout_s=30)
        statuses = [(await api.get("/products", headers=headers)).status for _ in range(25)]
        assert set(statuses) <= {200, 429}
        assert 429 in statuses  # the share holds: at most 20 in this process


async def test_the_image_quota_charges_the_new_sources_of_a_change(settings):
    async with access_api(settings, image_quota_per_hour=3) as api:
        _, headers = await new_user(api)
        kept = images(2)
        product_id = (await create_product(api, headers, product_images=kept))["product_id"]
        path = f"/products/{product_id}"
        # Keeping the two and adding one: one new source, the last image of the hour.
        grown = await api.patch(path, json={"product_images": [*kept, *images(1)]}, headers=headers)
        assert grown.status == 200, await grown.text()
        refused = await api.patch(path, json={"product_images": images(1)}, headers=headers)
        await assert_429(refused)
        assert rate_fields(refused)[:2] == (3, 0)
        renamed = await api.patch(path, json={"product_name": "No images"}, headers=headers)
        assert renamed.status == 200  # a change without new sources costs no images
