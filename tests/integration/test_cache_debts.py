"""Cache debts: every change and deletion of a product commits one, its writer pays it once Redis
holds the result, and one whose writer died first (the soak SIGKILLs API processes between
commit and cache write) is repaired from the row by any process's loop, so no deleted or
changed product is served from Redis until the TTL."""

from __future__ import annotations

import orjson
import pytest

from catalogue.cache import NOT_FOUND, TOMBSTONE_VERSION, ProductCache
from catalogue.cache_repair import CacheRepairs, PostgresLedger
from server.keys import VERSION_FLOORS

from .conftest import wait_for

pytestmark = pytest.mark.integration


async def created(api, user, name: str = "Lamp") -> int:
    response = await api.post(
        "/products", json={"user_id": user["user_id"], "product_name": name, "product_price": 3}
    )
    assert response.status == 201
    return int((await response.json())["product_id"])


async def debts(db, *product_ids: int) -> dict[int, int]:
    """The debts of these products (the database is shared with the other tests)."""
    rows = await db.fetch(
        "SELECT product_id, version FROM cache_debts WHERE product_id = ANY($1::bigint[])",
        list(product_ids),
    )
    return {r["product_id"]: r["version"] for r in rows}


def cache_over(redis_client, settings) -> ProductCache:
    return ProductCache(
        redis_client,
        ttl_s=settings.cache_ttl_seconds,
        negative_ttl_s=settings.cache_negative_ttl_seconds,
    )


async def test_a_change_and_a_deletion_answered_by_the_api_leave_no_debt(api, db, user):
    changed, deleted = await created(api, user), await created(api, user)
    assert await debts(db, changed, deleted) == {}  # a create owes nothing (see the migration)

    assert (await api.patch(f"/products/{changed}", json={"product_name": "Desk"})).status == 200
    assert (await api.delete(f"/products/{deleted}")).status == 204
    assert await debts(db, changed, deleted) == {}


async def test_a_write_whose_writer_died_before_the_cache_is_repaired_from_the_row(
    api, db, user, redis_client, settings
):
    renamed, deleted = await created(api, user), await created(api, user)
    cache = cache_over(redis_client, settings)
    for product_id in (renamed, deleted):  # cached as created
        assert (await api.get(f"/products/{product_id}")).status == 200
        assert await cache.get(product_id) not in (NOT_FOUND, None)

    # Writers that committed and were killed before their cache write: Redis hears nothing.
    await db.execute(
        "UPDATE products SET product_name = 'Desk', version = version + 1 WHERE id = $1", renamed
    )
    await db.execute("DELETE FROM products WHERE id = $1", deleted)
    assert await debts(db, renamed, deleted) == {renamed: 2, deleted: TOMBSTONE_VERSION}
    assert orjson.loads(await cache.get(renamed))["product_name"] == "Lamp"  # stale, for now

    ledger = PostgresLedger(db, acquire_timeout_s=settings.db_acquire_timeout_seconds)
    await CacheRepairs(cache, ledger, grace_s=0).repair()

    assert orjson.loads(await cache.get(renamed))["product_name"] == "Desk"
    assert await cache.get(deleted) == NOT_FOUND
    assert await debts(db, renamed, deleted) == {}
    assert (await api.get(f"/products/{deleted}")).status == 404


async def test_a_debt_for_a_write_after_the_repair_read_its_row_stays(api, db, user):
    product_id = await created(api, user)
    await db.execute("UPDATE products SET version = version + 1 WHERE id = $1", product_id)
    await db.execute("UPDATE products SET version = version + 1 WHERE id = $1", product_id)
    assert await debts(db, product_id) == {product_id: 3}

    ledger = PostgresLedger(db, acquire_timeout_s=5)
    await ledger.paid(product_id, 2)  # a repair that stored the row as it was at version 2
    assert await debts(db, product_id) == {product_id: 3}
    await ledger.paid(product_id, 3)
    assert await debts(db, product_id) == {}


async def test_until_it_is_repaired_a_value_older_than_the_committed_one_is_read_from_postgres(
    api, db, user, redis_client, settings
):
    """Not only at the end: a client whose change was answered never reads the state from
    before it, although the change's writer left Redis behind (the soak, seed 202)."""
    renamed, deleted = await created(api, user), await created(api, user)
    cache = cache_over(redis_client, settings)
    for product_id in (renamed, deleted):
        assert (await api.get(f"/products/{product_id}")).status == 200
    await db.execute(
        "UPDATE products SET product_name = 'Desk', version = version + 1 WHERE id = $1", renamed
    )
    await db.execute("DELETE FROM products WHERE id = $1", deleted)
    floors = api.server.app[VERSION_FLOORS]

    async def announced() -> bool:  # PostgreSQL's notifications reached this process
        return floors.stale(renamed, 1) and floors.stale(deleted, 1)

    await wait_for(announced, timeout_s=5, interval_s=0.01)
    assert orjson.loads(await cache.get(renamed))["product_name"] == "Lamp"  # Redis: stale

    response = await api.get(f"/products/{renamed}")
    assert (await response.json())["product_name"] == "Desk"
    assert response.headers["X-Cache"] == "MISS"
    assert (await api.get(f"/products/{deleted}")).status == 404
    # The read wrote what it read over the older values, so the next read is a hit again.
    assert orjson.loads(await cache.get(renamed))["product_name"] == "Desk"
    assert await cache.get(deleted) == NOT_FOUND
    assert len(floors) == 0
