"""The read path of GET /products/{id}: three tiers, each filled on the way back.

1. This process's memory (server/local_cache.py): a dict lookup, where most reads end.
2. Redis (catalogue/cache.py): the ready-to-send bytes every process shares, unless older than
   a version PostgreSQL announced (server/version_floors.py): such a value is read again.
3. PostgreSQL, through single flight: concurrent misses for one id share one query, and what it
   read goes into Redis (SET NX: never over a fresher value) and then into memory, unless an
   invalidation arrived since the read began.

The first tier is synchronous on purpose: a hit there costs no coroutine and no await, so the
handler asks it first (`from_memory`) and awaits `read` only when it has nothing.
"""

from __future__ import annotations

import asyncpg

from catalogue.cache import NOT_FOUND, TOMBSTONE_VERSION, Lookup, ProductCache
from catalogue.product_json import render_product
from config import Settings
from db import products
from db.pool import bounded_acquire
from server.local_cache import LocalCache
from server.singleflight import SingleFlight
from server.version_floors import VersionFloors

# What X-Cache says of a product served from either cache tier (the other values: Lookup's).
HIT = "HIT"
MISS = Lookup.MISS.value


class ProductReads:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        cache: ProductCache,
        local: LocalCache,
        floors: VersionFloors,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.cache = cache
        self.local = local
        self.floors = floors
        self.loads: SingleFlight[bytes] = SingleFlight()
        # The product's JSON (NOT_FOUND for a known 404) if this process holds it, else None.
        # Bound once, so the hot path makes the very call it would make without this class.
        self.from_memory = local.get

    async def read(self, product_id: int) -> tuple[bytes, str]:
        """For an id `from_memory` did not have: the product's JSON (NOT_FOUND when there is no
        such product) and what X-Cache says of it: HIT (Redis), MISS or BYPASS (PostgreSQL)."""
        local = self.local
        epoch = local.epoch  # an invalidation after this point makes what we read unfit to keep
        cache = self.cache
        cached = await cache.get_versioned(product_id)
        if isinstance(cached, tuple):
            version, body = cached
            if not self.floors.stale(product_id, version):
                local.put(product_id, body, epoch)
                return body, HIT
            stale, said = True, MISS
        else:
            stale, said = False, cached.value

        async def load() -> bytes:
            async with bounded_acquire(self.pool, self.settings) as conn:
                row = await products.get_product(conn, product_id)
            body = NOT_FOUND if row is None else render_product(row)
            if stale:
                # Over the older value (a product read stale and gone since is deleted: ids
                # are never reused).
                version = TOMBSTONE_VERSION if row is None else row["version"]
                stored = await cache.put_fresh(product_id, version, body)
            else:
                version = 0 if row is None else row["version"]
                stored = cached is Lookup.MISS and await cache.fill(product_id, version, body)
            if stored:
                # Only what went into Redis goes into memory: if the fill lost to a fresher
                # value, ours is not worth keeping.
                self.floors.stored(product_id, version)
                local.put(product_id, body, epoch)
            return body

        return await self.loads.run(product_id, load), said
