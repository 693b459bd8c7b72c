"""What the database references in storage: every image entry's keys, of every product.

The storage garbage collection (compressor/gc.py) keeps whatever this names. Read through a
cursor in one read-only transaction, so a large table is never held in memory as rows, and the
keys form one consistent snapshot.
"""

from __future__ import annotations

from db.pool import Connection

# An entry's own key is one of its renditions' (the largest JPEG); entries written before
# renditions existed have only their own.
_KEYS = """
SELECT DISTINCT k.key
  FROM products,
       jsonb_array_elements(products.images) AS entry,
       LATERAL (SELECT entry ->> 'key'
                UNION ALL
                SELECT r ->> 'key'
                  FROM jsonb_array_elements(COALESCE(entry -> 'renditions', '[]')) AS r) AS k(key)
 WHERE k.key IS NOT NULL
"""

# The session advisory lock that lets the garbage collection run one at a time across the
# group (pg_try_advisory_lock): a constant of its own.
GC_LOCK_KEY = 0x5354_4F52_4147_4547  # "STORAGEG"


async def referenced_keys(conn: Connection) -> set[str]:
    keys: set[str] = set()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for record in conn.cursor(_KEYS, prefetch=10_000):
            keys.add(record["key"])
    return keys


async def try_gc_lock(conn: Connection) -> bool:
    """Takes the garbage collection's session lock on `conn` (a dedicated connection, never a
    pooled one: the pool does not reset sessions) unless another session holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", GC_LOCK_KEY))


async def release_gc_lock(conn: Connection) -> None:
    await conn.fetchval("SELECT pg_advisory_unlock($1)", GC_LOCK_KEY)
