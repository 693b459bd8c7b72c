"""Queries of the api_keys table."""

from __future__ import annotations

import datetime

import asyncpg

from db.pool import Executor

# Last use is recorded at most once a minute per key, so verifying keys does not turn every
# request into a write.
_LOOKUP = """
WITH touched AS (
    UPDATE api_keys SET last_used_at = now()
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT user_id, secret_hash FROM api_keys WHERE id = $1
"""


async def create_key(
    conn: Executor, *, key_id: str, user_id: int, secret_hash: bytes
) -> datetime.datetime:
    created_at: datetime.datetime = await conn.fetchval(
        "INSERT INTO api_keys (id, user_id, secret_hash) VALUES ($1, $2, $3) RETURNING created_at",
        key_id,
        user_id,
        secret_hash,
    )
    return created_at


async def key_for_verification(conn: Executor, key_id: str) -> asyncpg.Record | None:
    """The key's user and secret hash, marking it used."""
    return await conn.fetchrow(_LOOKUP, key_id)


async def list_keys(conn: Executor, user_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, created_at, last_used_at FROM api_keys WHERE user_id = $1 ORDER BY created_at, id",
        user_id,
    )


async def delete_key(conn: Executor, *, user_id: int, key_id: str) -> bool:
    result = await conn.execute(
        "DELETE FROM api_keys WHERE id = $1 AND user_id = $2", key_id, user_id
    )
    return result != "DELETE 0"
