"""Cached products their writers could not refresh are written again, from the database, once
Redis answers (found by the soak: after a Redis outage, or an API process SIGKILLed between its
commit and its cache write, every process served the state from before it, deleted products
included)."""

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


@dataclass
class Ledger:
    """The debts table and the rows, over dicts (every debt counts as past its grace)."""

    rows: dict[int, tuple[int, bytes]]
    debts: dict[int, int] = field(default_factory=dict)  # product id -> version owed
    up: bool = True

    def _check(self) -> None:
        if not self.up:
            raise OSError("connection refused")

    async def owed(self, *, older_than_s: float, limit: int) -> list[int]:
        self._check()
        return sorted(self.debts)[:limit]

    async def load(self, product_id: int) -> tuple[int, bytes] | None:
        self._check()
        return self.rows.get(product_id)

    async def paid(self, product_id: int, version: int) -> None:
        self._check()
        if self.debts.get(product_id, version + 1) <= version:
            del self.debts[product_id]


def repairs_over(redis: Redis, ledger: Ledger) -> CacheRepairs:
    return CacheRepairs(cast(ProductCache, redis), ledger)


async def test_owed_products_wait_for_redis_then_get_the_database_state_or_a_tombstone():
    redis = Redis(values={1: (4, b"old"), 2: (3, b"deleted since")})
    ledger = Ledger(rows={1: (5, b'{"v":5}')}, debts={1: 5, 2: TOMBSTONE_VERSION})
    repairs = repairs_over(redis, ledger)

    assert await repairs.repair() == 0  # Redis still away: nothing paid
    assert ledger.debts == {1: 5, 2: TOMBSTONE_VERSION}

    redis.up = True
    assert await repairs.repair() == 2
    assert redis.values == {1: (5, b'{"v":5}'), 2: (TOMBSTONE_VERSION, NOT_FOUND)}
    assert ledger.debts == {}


async def test_a_repair_never_replaces_a_newer_value_and_a_debt_for_a_newer_write_stays():
    redis = Redis(up=True, values={1: (9, b"newer")})
    ledger = Ledger(rows={1: (7, b"row")}, debts={1: 7})
    assert await repairs_over(redis, ledger).repair() == 1
    assert redis.values[1] == (9, b"newer")
    assert ledger.debts == {}

    # A write landed after the repair read the row: its debt names a version the repair did not
    # store, and stays for its writer (or the next round) to pay.
    ledger.debts[1] = 10
    await ledger.paid(1, 7)
    assert ledger.debts == {1: 10}


async def test_the_writer_settles_its_debt_and_leaves_it_to_the_loop_when_postgres_is_away():
    ledger = Ledger(rows={}, debts={1: 3, 2: 4})
    repairs = repairs_over(Redis(up=True), ledger)
    await repairs.settle(1, 3)
    assert ledger.debts == {2: 4}

    ledger.up = False
    await repairs.settle(2, 4)  # logged, not raised: the write has answered already
    assert ledger.debts == {2: 4}
