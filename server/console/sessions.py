"""Console sessions: a random token in a cookie, its record in Redis under the token's SHA-256.

The cookie holds the only copy of the token: Redis keeps its digest (a stolen Redis dump signs
nobody in), the admin's public id (`admin-N`, never the key) and the session's CSRF token. A
session ends at its expiry or at sign-out, which deletes the record.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson
import redis.asyncio as redis
from aiohttp import web

COOKIE = "console_session"
COOKIE_PATH = "/console"
SESSION_PREFIX = "console:session:"
# Short on purpose (shared/notes/http-conventions.md): an operator signs in again each day.
SESSION_TTL_S = 8 * 3600
_TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    admin: str  # the admin key's public id, as logs name it ('admin-N')
    csrf: str  # the token every form of this session carries

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and sent.isascii() and hmac.compare_digest(sent, self.csrf)


def _record_key(token: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, client: redis.Redis, ttl_s: int = SESSION_TTL_S) -> None:
        self.client = client
        self.ttl_s = ttl_s

    async def start(self, admin: str) -> tuple[str, Session]:
        """A new session for `admin`: the cookie's token and the session."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        session = Session(admin, secrets.token_urlsafe(_TOKEN_BYTES))
        record = orjson.dumps({"admin": session.admin, "csrf": session.csrf})
        await self.client.set(_record_key(token), record, ex=self.ttl_s)
        return token, session

    async def find(self, token: str | None) -> Session | None:
        if not token or len(token) > 2 * _TOKEN_BYTES or not token.isascii():
            return None
        record = await self.client.get(_record_key(token))
        if record is None:
            return None
        fields = orjson.loads(record)
        return Session(fields["admin"], fields["csrf"])

    async def end(self, token: str) -> None:
        await self.client.delete(_record_key(token))


def set_cookie(response: web.StreamResponse, request: web.Request, token: str, ttl_s: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=ttl_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.secure
    )
