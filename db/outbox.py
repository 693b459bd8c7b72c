"""Queries of the outbox table, drained by the API's relay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from config.logging import current_traceparent
from db.pool import Connection, Executor


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message the relay will publish as it is: `payload` is JSON text; `traceparent`, the
    trace of the work that wrote it (by default the current one), goes with it as a header."""

    topic: str
    key: str
    payload: str
    traceparent: str | None = field(default_factory=current_traceparent.get)


# SKIP LOCKED lets several relays (one per API process) drain the table side by side.
_CLAIM = """
SELECT id, topic, key, payload::text AS payload, traceparent
  FROM outbox
 ORDER BY id
 LIMIT $1
   FOR UPDATE SKIP LOCKED
"""


async def insert(conn: Executor, message: OutboxMessage) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, key, payload, traceparent)"
        " VALUES ($1, $2, $3::text::jsonb, $4)",
        message.topic,
        message.key,
        message.payload,
        message.traceparent,
    )


async def claim_batch(conn: Connection, limit: int) -> list[asyncpg.Record]:
    """Locks up to `limit` rows until the caller's transaction ends."""
    return await conn.fetch(_CLAIM, limit)


async def delete(conn: Connection, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(ids))


async def backlog(conn: Executor) -> int:
    return await conn.fetchval("SELECT count(*) FROM outbox")
