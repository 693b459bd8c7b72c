"""Cached products their writers could not refresh, written again from the database.

Every change or deletion of a product commits a debt with it (db/migrations/0010_cache_debts.sql),
which its writer pays once Redis holds the new version (`settle`). A writer whose Redis stayed
away through its retries (down, restarting, frozen), or that was SIGKILLed between its commit and
its refresh, leaves the debt behind, and with it the value from before the write in Redis (a
restart reloads the snapshot it saved on the way down): every process would serve that old
state, a deleted product included, until the cache's TTL. The soak found both. So every API and
worker process runs this loop: the debts older than their writers' time to pay are rendered
again from PostgreSQL and stored over any older version once Redis answers (a newer value there
is kept: the writers' version rule), then cleared. Two processes repairing one debt at once is
harmless for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg

from catalogue.background import BackgroundLoop
from catalogue.cache import CACHE_ERRORS, NOT_FOUND, TOMBSTONE_VERSION, ProductCache
from catalogue.product_json import render_product
from db import cache_debts, products
from db.pool import DATABASE_ERRORS

log = logging.getLogger(__name__)

REPAIR_INTERVAL_S = 1.0
# A writer retries Redis for a second or two before it gives up: its debt is left to it that long.
GRACE_S = 5.0
BATCH = 200

# Pays a product's cache debt up to a version: CacheRepairs.settle, as the writers take it.
Settle = Callable[[int, int], Awaitable[None]]


async def no_settle(_product_id: int, _version: int) -> None:
    """Leaves every debt to the repair loop."""


class Ledger(Protocol):
    """The database side: the debts, and the rows they are paid from."""

    async def owed(self, *, older_than_s: float, limit: int) -> list[int]: ...

    async def load(self, product_id: int) -> tuple[int, bytes] | None:
        """The row's version and its rendered JSON, or None for a product that is gone."""

    async def paid(self, product_id: int, version: int) -> None: ...


class PostgresLedger:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_s: float) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s

    async def owed(self, *, older_than_s: float, limit: int) -> list[int]:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            return await cache_debts.owed(conn, older_than_s=older_than_s, limit=limit)

    async def load(self, product_id: int) -> tuple[int, bytes] | None:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            row = await products.get_product(conn, product_id)
        return None if row is None else (row["version"], render_product(row))

    async def paid(self, product_id: int, version: int) -> None:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            await cache_debts.paid(conn, product_id, version)


class CacheRepairs(BackgroundLoop):
    """Used as `async with CacheRepairs(...)`: repairs every interval_s until the block ends."""

    task_name = "cache-repairs"

    def __init__(
        self,
        cache: ProductCache,
        ledger: Ledger,
        *,
        interval_s: float = REPAIR_INTERVAL_S,
        grace_s: float = GRACE_S,
    ) -> None:
        self.cache = cache
        self.ledger = ledger
        self.interval_s = interval_s
        self.grace_s = grace_s

    async def settle(self, product_id: int, version: int) -> None:
        """A writer's payment once Redis holds `version`; if PostgreSQL is away meanwhile, the
        loop finds Redis up to date and clears the debt later."""
        try:
            await self.ledger.paid(product_id, version)
        except DATABASE_ERRORS as exc:
            log.warning(
                "cache.debt_unsettled", extra={"product_id": product_id, "error": repr(exc)}
            )

    async def repair(self) -> int:
        """Stores every product owed past the grace, while PostgreSQL and Redis both answer;
        how many. A debt stays until the version it was read at is in Redis."""
        # The debts first: with none owed (nearly always), the round costs no Redis round trip.
        owed = await self.ledger.owed(older_than_s=self.grace_s, limit=BATCH)
        if not owed or not await self.cache.ping():
            return 0
        repaired = 0
        for product_id in owed:
            loaded = await self.ledger.load(product_id)
            version, body = loaded if loaded is not None else (TOMBSTONE_VERSION, NOT_FOUND)
            await self.cache.put_fresh_or_raise(product_id, version, body)
            await self.ledger.paid(product_id, version)
            repaired += 1
        if repaired:
            log.info("cache.repaired", extra={"products": repaired})
        return repaired

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)  # the loop's period, not a wait for a race
            try:
                await self.repair()
            except (*CACHE_ERRORS, *DATABASE_ERRORS) as exc:  # the next round retries
                log.warning("cache.repair_failed", extra={"error": repr(exc)})
