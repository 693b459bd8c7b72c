"""Cached products a fresh write could not refresh, written again once Redis answers.

A change, a deletion or a job's result that cannot reach Redis within its retries (Redis down,
restarting, frozen) leaves the value from before it there: once Redis is back (a restart reloads
the snapshot it saved on the way down; a frozen one never lost it), every process would serve
that old state, a deleted product included, for up to the cache's TTL. The soak found exactly
that after stopping Redis for seconds. So each process remembers the ids it owes, and a loop
renders each again from PostgreSQL and stores it over any older version once Redis answers
(a newer value there is kept: the writers' version rule).

In memory: a process killed while it owes values leaves them to the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from catalogue.background import BackgroundLoop
from catalogue.cache import CACHE_ERRORS, NOT_FOUND, TOMBSTONE_VERSION, ProductCache

log = logging.getLogger(__name__)

# The row's version and its rendered JSON, or None for a product that is gone.
Load = Callable[[int], Awaitable[tuple[int, bytes] | None]]
REPAIR_INTERVAL_S = 1.0


class CacheRepairs(BackgroundLoop):
    """Used as `async with CacheRepairs(...)`: repairs every interval_s until the block ends."""

    task_name = "cache-repairs"

    def __init__(
        self, cache: ProductCache, load: Load, *, interval_s: float = REPAIR_INTERVAL_S
    ) -> None:
        self.cache = cache
        self.load = load
        self.interval_s = interval_s
        self.owed: set[int] = set()

    def owe(self, product_id: int) -> None:
        if product_id not in self.owed:
            log.warning("cache.repair_owed", extra={"product_id": product_id})
        self.owed.add(product_id)

    async def repair(self) -> int:
        """Stores every owed product whose row and Redis both answer; how many. An id is taken
        off before its row is read, so a write failing meanwhile owes it again."""
        if not self.owed or not await self.cache.ping():
            return 0
        repaired = 0
        for product_id in sorted(self.owed):
            self.owed.discard(product_id)
            try:
                loaded = await self.load(product_id)
                version, body = loaded if loaded is not None else (TOMBSTONE_VERSION, NOT_FOUND)
                await self.cache.put_fresh_or_raise(product_id, version, body)
            except Exception as exc:  # PostgreSQL or Redis gone again: the next round retries
                self.owed.add(product_id)
                log.warning(
                    "cache.repair_failed", extra={"product_id": product_id, "error": repr(exc)}
                )
                return repaired
            repaired += 1
        log.info("cache.repaired", extra={"products": repaired})
        return repaired

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)  # the loop's period, not a wait for a race
            with contextlib.suppress(*CACHE_ERRORS):
                await self.repair()
