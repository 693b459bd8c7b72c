"""Requests racing on one product end in a state some serial order would give.

Each race is held: a transaction of the test's own locks the product's row, both contenders are
sent and seen waiting on that lock in PostgreSQL (pg_stat_activity), then the lock is released
and they run back to back in whichever order the database lets them. The final state (the row,
what every process serves, what is queued for deletion) must be the outcome of one of the two
serial orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from catalogue import cache as product_cache
from catalogue import image_state
from catalogue.jobs import DeleteObjects, ImageJob, decode_job
from catalogue.retry import RetryPolicy
from compressor.results import ImageResult, ProductResults
from server.app import create_app
from server.keys import RELAY
from testkit.products import finish_processing

from .conftest import wait_for
from .test_api_lifecycle import A, B, C, new_product

pytestmark = pytest.mark.integration


async def quiet_client(settings) -> TestClient:
    """An API process's worth of app whose relay publishes nothing: what a write puts in the
    outbox stays there to be read."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    client.app[RELAY].request_stop()
    return client


@pytest.fixture
async def apis(settings) -> AsyncIterator[tuple[TestClient, TestClient]]:
    first, second = await quiet_client(settings), await quiet_client(settings)
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def owner(apis) -> dict[str, str]:
    email = f"{uuid.uuid4().hex}@example.com"
    response = await apis[0].post("/users", json={"username": "racer", "email": email})
    assert response.status == 201
    return await response.json()


@contextlib.asynccontextmanager
async def row_held(db, product_id: int) -> AsyncIterator[None]:
    """The product's row locked by the test until the block ends."""
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product_id)
            yield
        finally:
            await transaction.rollback()


async def waiting_on_a_lock(db, count: int) -> bool:
    waiting = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return waiting >= count


async def held_race(db, product_id: int, *contenders):
    """Runs the contenders (coroutines) at once behind the row's lock; their results."""
    async with row_held(db, product_id):
        tasks = [asyncio.ensure_future(c) for c in contenders]
        await wait_for(lambda: waiting_on_a_lock(db, len(tasks)), timeout_s=10)
    return await asyncio.gather(*tasks)


async def queued_deletions(db, product_id: int) -> set[str]:
    rows = await db.fetch(
        "SELECT payload::text FROM outbox WHERE key = $1 AND payload ? 'kind'", str(product_id)
    )
    jobs = [decode_job(r["payload"].encode()) for r in rows]
    return {key for job in jobs if isinstance(job, DeleteObjects) for key in job.keys}


async def served_by_both(apis, product_id: int) -> list[tuple[int, dict | None]]:
    answers = []
    for api in apis:
        response = await api.get(f"/products/{product_id}")
        answers.append((response.status, await response.json()))
    return answers


async def test_two_patches_held_together_end_as_one_of_the_serial_orders(apis, owner, db):
    first, second = apis
    product_id = await new_product(first, owner, [A])
    assert (await second.get(f"/products/{product_id}")).status == 200  # cached there

    one, other = await held_race(
        db,
        product_id,
        first.patch(f"/products/{product_id}", json={"product_name": "One", "product_price": 1}),
        second.patch(f"/products/{product_id}", json={"product_name": "Other"}),
    )
    assert (one.status, other.status) == (200, 200)
    answered = [await one.json(), await other.json()]
    assert [a["product_name"] for a in answered] == ["One", "Other"]
    # Each ran on the other's result or before it: the final row has the last one's name and
    # One's price (Other sets no price), and the last one's answer is that row.
    row = await db.fetchrow(
        "SELECT product_name, product_price FROM products WHERE id = $1", product_id
    )
    assert row["product_name"] in ("One", "Other")
    assert float(row["product_price"]) == 1.0
    last = answered[0] if row["product_name"] == "One" else answered[1]
    assert float(last["product_price"]) == 1.0

    async def both_serve_the_row() -> bool:
        served = await served_by_both(apis, product_id)
        return [body["product_name"] for _, body in served] == [row["product_name"]] * 2

    await wait_for(both_serve_the_row, timeout_s=5)


async def test_a_patch_racing_a_delete_ends_deleted_everywhere_as_either_order_would(
    apis, owner, db
):
    first, second = apis
    product_id = await new_product(first, owner, [A])
    await finish_processing(db, product_id, urls=["http://cdn.example/a.jpg"])
    stored = f"products/{product_id}/0"
    assert (await first.get(f"/products/{product_id}")).status == 200  # cached in one process

    patched, deleted = await held_race(
        db,
        product_id,
        first.patch(f"/products/{product_id}", json={"product_name": "Renamed"}),
        second.delete(f"/products/{product_id}"),
    )
    # PATCH then DELETE: 200, 204. DELETE then PATCH: 404 for the patch, 204.
    assert (patched.status, deleted.status) in {(200, 204), (404, 204)}
    if patched.status == 200:
        assert (await patched.json())["product_name"] == "Renamed"

    # Either way the product is gone: from the database, from every process (the patch's
    # fresher copy cannot outlive the delete's tombstone), and its stored image is queued for
    # deletion.
    assert await db.fetchval("SELECT count(*) FROM products WHERE id = $1", product_id) == 0

    async def gone_everywhere() -> bool:
        return [s for s, _ in await served_by_both(apis, product_id)] == [404, 404]

    await wait_for(gone_everywhere, timeout_s=5)
    assert stored in await queued_deletions(db, product_id)


async def test_a_patch_racing_the_workers_result_ends_as_one_of_the_serial_orders(
    apis, owner, db, settings
):
    first, second = apis
    product_id = await new_product(first, owner, [A, B])
    before = orjson.loads(
        await db.fetchval("SELECT images::text FROM products WHERE id = $1", product_id)
    )
    job = ImageJob(product_id, (A, B), 1)
    results = [
        ImageResult(A, url="http://cdn.example/a.jpg", key=f"products/{product_id}/a"),
        ImageResult(B, url="http://cdn.example/b.jpg", key=f"products/{product_id}/b"),
    ]
    outcomes = [r.outcome() for r in results]
    client = product_cache.connect(settings.redis_url)
    worker = ProductResults(
        db,
        product_cache.ProductCache(
            client,
            ttl_s=settings.cache_ttl_seconds,
            negative_ttl_s=settings.cache_negative_ttl_seconds,
        ),
        retry_policy=RetryPolicy(base_s=0.0, cap_s=0.0, max_attempts=2),
        cache_ttl_s=settings.cache_ttl_seconds,
        jobs_topic=settings.kafka_jobs_topic,
        events_topic=settings.kafka_events_topic,
    )
    try:
        patched, recorded = await held_race(
            db,
            product_id,
            second.patch(f"/products/{product_id}", json={"product_images": [B, C]}),
            worker.record(job, results),
        )
    finally:
        await client.aclose()
    assert patched.status == 200, await patched.text()

    # The two serial orders, by the same rules the writers apply.
    landed = image_state.apply_outcomes(before, 1, outcomes)
    assert landed is not None
    worker_first = image_state.change_sources(landed.entries, [B, C], 2).entries
    changed = image_state.change_sources(before, [B, C], 2).entries
    late = image_state.apply_outcomes(changed, 1, outcomes)
    patch_first = late.entries if late is not None else changed

    after = orjson.loads(
        await db.fetchval("SELECT images::text FROM products WHERE id = $1", product_id)
    )
    assert after in (worker_first, patch_first)
    # A's output is referenced by nobody and is to be deleted exactly once: queued for deletion
    # (the worker first: the patch dropped it) or handed back to the worker as unused (the patch
    # first: it never landed). The two orders may leave equal entries, so this tells them apart.
    a_key = f"products/{product_id}/a"
    queued = a_key in await queued_deletions(db, product_id)
    assert queued != (a_key in recorded.unused), (queued, recorded)
    assert a_key not in image_state.referenced_keys(after)

    # Both processes serve what the database holds.
    async def both_serve_the_row() -> bool:
        served = await served_by_both(apis, product_id)
        images = [body["product_images"] for _, body in served if body]
        return [s for s, _ in served] == [200, 200] and images == [[B, C], [B, C]]

    await wait_for(both_serve_the_row, timeout_s=5)
    etags = [(await api.get(f"/products/{product_id}")).headers["ETag"] for api in apis]
    assert etags[0] == etags[1]
