"""Users and their API keys: sign-up (with the first key, shown once), more keys, revocation."""

from __future__ import annotations

from typing import Any

import asyncpg

from config import Settings
from db import api_keys, users
from db.pool import Connection, bounded_acquire
from server.api_keys import issue_key
from server.auth import Authenticator
from server.errors import ApiError
from server.idempotency import Answer, Idempotent, once
from server.validation import NewUser


class Accounts:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, authenticator: Authenticator | None):
        self.pool = pool
        self.settings = settings
        self.authenticator = authenticator  # None with AUTH_MODE=off: users get no keys

    async def sign_up(self, new: NewUser, idempotent: Idempotent | None) -> Answer:
        """The new user (with its first API key unless AUTH_MODE=off), in one transaction with
        its Idempotency-Key record."""
        async with bounded_acquire(self.pool, self.settings) as conn, conn.transaction():

            async def create() -> Answer:
                return await self._create_user(conn, new)

            if idempotent is None:
                return await create()
            return await once(conn, idempotent, "POST /users", create)

    async def _create_user(self, conn: Connection, new: NewUser) -> Answer:
        try:
            user_id = await users.create_user(conn, new.username, new.email)
        except users.DuplicateEmail:
            raise ApiError(
                409, f"a user with email {new.email} exists already", {"field": "email"}
            ) from None
        body: dict[str, Any] = {
            "user_id": str(user_id),
            "username": new.username,
            "email": new.email,
        }
        if self.authenticator is not None:
            key = issue_key()
            await api_keys.create_key(
                conn, key_id=key.key_id, user_id=user_id, secret_hash=key.secret_hash
            )
            body["api_key"] = key.token
        return Answer(201, body)

    async def add_key(self, user_id: int) -> dict[str, str]:
        key = issue_key()
        async with bounded_acquire(self.pool, self.settings) as conn:
            try:
                created_at = await api_keys.create_key(
                    conn, key_id=key.key_id, user_id=user_id, secret_hash=key.secret_hash
                )
            except asyncpg.ForeignKeyViolationError:
                raise ApiError(404, f"user {user_id} not found") from None
        return {"key_id": key.key_id, "api_key": key.token, "created_at": created_at.isoformat()}

    async def keys(self, user_id: int) -> list[dict[str, str | None]]:
        async with bounded_acquire(self.pool, self.settings) as conn:
            rows = await api_keys.list_keys(conn, user_id)
        return [
            {
                "key_id": row["id"],
                "created_at": row["created_at"].isoformat(),
                "last_used_at": row["last_used_at"] and row["last_used_at"].isoformat(),
            }
            for row in rows
        ]

    async def revoke_key(self, user_id: int, key_id: str) -> None:
        async with bounded_acquire(self.pool, self.settings) as conn:
            deleted = await api_keys.delete_key(conn, user_id=user_id, key_id=key_id)
        if not deleted:
            raise ApiError(404, f"API key {key_id} not found")
        if self.authenticator is not None:
            self.authenticator.forget(key_id)  # refused here at once, elsewhere within a second
