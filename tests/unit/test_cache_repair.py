"""Cached products a write could not refresh are written again, from the database, once Redis
answers (found by the soak: after a Redis outage every process served the state from before it,
deleted products included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from catalogue.cache import NOT_FOUND, TOMBSTONE_VERSION, ProductCache
from catalogue.cache_repair import CacheRepairs


@dataclass
class Redis:
    """ProductCache's ping and put_fresh_or_raise, over a dict; `up` says whether it answers."""

    up: bool = False
    values: dict[int, tuple[int, bytes]] = field(default_factory=dict)

    async def ping(self) -> bool:
        return self.up

    async def put_fresh_or_raise(self, product_id: int, version: int, body: bytes) -> bool:
        if not self.up:
            raise ConnectionError("redis is down")
        current = self.values.get(product_id)
        if current is not None and current[0] >= version:
            return False
        self.values[product_id] = (version, body)
        return True


ROWS = {1: (5, b'{"product_id":"1","v":5}')}  # product 2 is gone


async def load(product_id: int) -> tuple[int, bytes] | None:
    return ROWS.get(product_id)


def repairs_over(redis: Redis) -> CacheRepairs:
    return CacheRepairs(cast(ProductCache, redis), load)


async def test_owed_products_wait_for_redis_then_get_the_database_state_or_a_tombstone():
    redis = Redis(values={1: (4, b"old"), 2: (3, b"deleted since")})
    repairs = repairs_over(redis)
    repairs.owe(1)
    repairs.owe(2)

    assert await repairs.repair() == 0  # Redis still away: nothing taken off
    assert repairs.owed == {1, 2}

    redis.up = True
    assert await repairs.repair() == 2
    assert redis.values == {1: ROWS[1], 2: (TOMBSTONE_VERSION, NOT_FOUND)}
    assert repairs.owed == set()


async def test_a_repair_never_replaces_a_newer_value_and_one_that_fails_stays_owed():
    redis = Redis(up=True, values={1: (9, b"newer")})
    repairs = repairs_over(redis)
    repairs.owe(1)
    assert await repairs.repair() == 1
    assert redis.values[1] == (9, b"newer")

    async def database_down(product_id: int) -> tuple[int, bytes] | None:
        raise OSError("connection refused")

    failing = CacheRepairs(cast(ProductCache, redis), database_down)
    failing.owe(3)
    assert await failing.repair() == 0
    assert failing.owed == {3}
