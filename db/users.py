"""Queries of the users table."""

from __future__ import annotations

import asyncpg

from db.pool import Executor


class DuplicateEmail(Exception):
    pass


async def create_user(conn: Executor, username: str, email: str) -> int:
    try:
        return await conn.fetchval(
            "INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id", username, email
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateEmail(email) from None
