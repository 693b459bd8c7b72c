"""Products whose cached copy may be older than their row (db/migrations/0010_cache_debts.sql):
recorded by a trigger in the transaction of every change and deletion, cleared here."""

from __future__ import annotations

from db.pool import Executor

# Oldest first, so an outage's backlog drains in the order it was written.
_OWED = """
SELECT product_id FROM cache_debts
 WHERE owed_since < now() - make_interval(secs => $1)
 ORDER BY owed_since
 LIMIT $2
"""
# A debt for a newer version (a write that landed meanwhile) stays for that write to clear.
_PAID = "DELETE FROM cache_debts WHERE product_id = $1 AND version <= $2"


async def owed(db: Executor, *, older_than_s: float, limit: int) -> list[int]:
    """Products owed for longer than `older_than_s`: their writers had that long to pay."""
    return [r["product_id"] for r in await db.fetch(_OWED, older_than_s, limit)]


async def paid(db: Executor, product_id: int, version: int) -> None:
    """The cache holds `version` of the product or a newer one (TOMBSTONE_VERSION: gone)."""
    await db.execute(_PAID, product_id, version)
