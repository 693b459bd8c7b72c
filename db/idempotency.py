"""Queries of the idempotency_keys table."""

from __future__ import annotations

import hashlib

import asyncpg

from db.pool import Connection, Executor


def _lock_id(owner: str, key_hash: bytes) -> int:
    # A signed 64-bit advisory lock id for (owner, key): a collision only makes two unrelated
    # first requests see a 409 while the other runs, never mixes their answers.
    digest = hashlib.sha256(owner.encode() + b"\0" + key_hash).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def try_lock(conn: Connection, owner: str, key_hash: bytes) -> bool:
    """Takes the key's lock until the transaction ends; False when another holds it."""
    locked: bool = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1::bigint)", _lock_id(owner, key_hash)
    )
    return locked


async def find(
    conn: Connection, owner: str, key_hash: bytes, ttl_hours: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT request_hash, sealed_answer FROM idempotency_keys
            WHERE owner = $1 AND key_hash = $2
              AND created_at > now() - make_interval(hours => $3)""",
        owner,
        key_hash,
        ttl_hours,
    )


async def record(
    conn: Connection,
    owner: str,
    key_hash: bytes,
    request_hash: bytes,
    status: int,
    sealed_answer: bytes,
) -> None:
    """Records a first answer; an expired record of the same key is replaced."""
    await conn.execute(
        """INSERT INTO idempotency_keys (owner, key_hash, request_hash, status, sealed_answer)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (owner, key_hash) DO UPDATE
              SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
                  sealed_answer = EXCLUDED.sealed_answer, created_at = now()""",
        owner,
        key_hash,
        request_hash,
        status,
        sealed_answer,
    )


async def purge_expired(conn: Executor, ttl_hours: int) -> int:
    result = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(hours => $1)",
        ttl_hours,
    )
    return int(result.split()[-1])
