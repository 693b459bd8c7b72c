"""The second invalidation feed: a product change committed in PostgreSQL drops every API
process's local copy of it even when no word of it reaches Redis (a writer that could not reach a
frozen Redis; the 10-minute soak, seed 202, read a rename undone that way)."""

from __future__ import annotations

import pytest

from server.change_feed import APPLICATION_NAME
from server.keys import LOCAL_CACHE
from server.local_cache import POSTGRES, REDIS

from .conftest import wait_for

pytestmark = pytest.mark.integration


async def created(api, user) -> int:
    response = await api.post(
        "/products",
        json={
            "user_id": user["user_id"],
            "product_name": "Lamp",
            "product_price": 3,
            "product_images": ["http://127.0.0.1:1/lamp.jpg"],
        },
    )
    assert response.status == 201
    return int((await response.json())["product_id"])


async def held_locally(api, product_id: int) -> None:
    local = api.server.app[LOCAL_CACHE]

    async def subscribed_to_both() -> bool:
        return local.enabled

    await wait_for(subscribed_to_both, timeout_s=10)
    for _ in range(2):  # the first read fills the local tier, the second is served by it
        assert (await api.get(f"/products/{product_id}")).status == 200
    assert local.get(product_id) is not None


async def test_a_change_only_postgresql_saw_drops_the_local_copy(api, db, user):
    product_id = await created(api, user)
    await held_locally(api, product_id)
    # A writer whose Redis write never landed: the row changes, Redis hears nothing.
    await db.execute(
        "UPDATE products SET product_name = 'renamed', version = version + 1 WHERE id = $1",
        product_id,
    )
    local = api.server.app[LOCAL_CACHE]

    async def dropped() -> bool:
        return local.get(product_id) is None

    await wait_for(dropped, timeout_s=5, interval_s=0.01)


async def test_a_deleted_row_drops_the_local_copy_too(api, db, user):
    product_id = await created(api, user)
    await held_locally(api, product_id)
    await db.execute("DELETE FROM products WHERE id = $1", product_id)
    local = api.server.app[LOCAL_CACHE]

    async def dropped() -> bool:
        return local.get(product_id) is None

    await wait_for(dropped, timeout_s=5, interval_s=0.01)


async def test_the_local_cache_is_off_while_the_feed_is_lost_and_back_once_it_listens_again(
    api, db
):
    local = api.server.app[LOCAL_CACHE]
    assert local.feeds == {REDIS, POSTGRES}

    async def enabled() -> bool:
        return local.enabled

    async def disabled() -> bool:
        return not local.enabled

    await wait_for(enabled, timeout_s=10)
    epoch = local.epoch
    ended = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = $1 AND datname = current_database()",
        APPLICATION_NAME,
    )
    assert ended >= 1
    # Off for at least the resubscribe back-off's base (0.1 s), then on again with nothing kept.
    await wait_for(disabled, timeout_s=10, interval_s=0.01)
    await wait_for(enabled, timeout_s=10)
    assert local.epoch > epoch
