"""Queries of the users table."""

from __future__ import annotations

import asyncpg

from db.pool import Connection, Executor


class DuplicateEmail(Exception):
    pass


async def create_user(conn: Executor, username: str, email: str) -> int:
    try:
        return await conn.fetchval(
            "INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id", username, email
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateEmail(email) from None


async def lock_user(conn: Connection, user_id: int) -> bool:
    """Locks the user's row until the transaction ends (False: no such user). A product insert
    for the user (its foreign key check takes a share lock on this row) then waits for the
    transaction, and one already under way is waited for: once locked, the user's products are
    all there is to delete."""
    return await conn.fetchval("SELECT true FROM users WHERE id = $1 FOR UPDATE", user_id) is True


async def delete_user(conn: Connection, user_id: int) -> bool:
    """Deletes the user, its API keys (ON DELETE CASCADE) and its Idempotency-Key records; its
    products must be gone first."""
    await conn.execute("DELETE FROM idempotency_keys WHERE owner = $1", f"user:{user_id}")
    result = await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    return result != "DELETE 0"
