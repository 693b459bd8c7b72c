"""Who is calling: bearer keys verified in-process, coherent across API processes.

A verified key is remembered for at most `KEY_CACHE_TTL_S`, so a cached read costs a hash and
a dict lookup, not a database query, and a key revoked in any process is refused by every process
within that time (the revoking process forgets it at once). While PostgreSQL is unreachable a
remembered key keeps working: nothing can be revoked then anyway, and cached reads stay up.

Admin keys come from the settings; only their SHA-256 digests are kept, compared with
`hmac.compare_digest`, every one of them on every check, so timing says nothing about which.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from catalogue.product_json import owner_marker
from server.api_keys import parse_token, secret_matches
from server.singleflight import SingleFlight

KEY_CACHE_TTL_S = 1.0
KEY_CACHE_MAX_ITEMS = 100_000


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated (or anonymous) sender of a request; one object per key, reused by
    every request that sends it."""

    user_id: int | None  # None for admins and anonymous callers
    key_id: str | None
    is_admin: bool = False
    # What this user's rendered products hold (catalogue.product_json.owner_marker).
    owns: bytes = b""

    @property
    def authenticated(self) -> bool:
        return self.is_admin or self.user_id is not None

    def may_act_for(self, user_id: int) -> bool:
        return self.is_admin or self.user_id == user_id


ANONYMOUS = Caller(None, None)
ADMIN = Caller(None, None, is_admin=True)


class InvalidToken(Exception):
    """Unknown, revoked or malformed: the answer is 401 whichever, so keys cannot be probed."""


@dataclass(frozen=True, slots=True)
class _Known:
    """What a key id named when last loaded; an id with no row is remembered too (with no
    hash), so random tokens cannot make every request a database query."""

    caller: Caller
    secret_hash: bytes
    loaded_at: float


KeyLoader = Callable[[str], Awaitable[asyncpg.Record | None]]


class Authenticator:
    def __init__(self, load_key: KeyLoader, admin_keys: tuple[str, ...]) -> None:
        self._load_key = load_key
        self._admin_digests = tuple(hashlib.sha256(k.encode()).digest() for k in admin_keys)
        self._known: dict[str, _Known] = {}
        self._loads: SingleFlight[_Known] = SingleFlight()

    def _is_admin(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        matched = False
        for admin in self._admin_digests:
            matched |= hmac.compare_digest(digest, admin)
        return matched

    async def caller(self, token: str) -> Caller:
        """The caller a bearer token names; InvalidToken when it names none."""
        if self._admin_digests and self._is_admin(token):
            return ADMIN
        parsed = parse_token(token)
        if parsed is None:
            raise InvalidToken("malformed")
        key_id, secret = parsed
        known = self._known.get(key_id)
        if known is None or time.monotonic() - known.loaded_at >= KEY_CACHE_TTL_S:
            known = await self._reload(key_id, known)
        if not known.secret_hash or not secret_matches(secret, known.secret_hash):
            raise InvalidToken("unknown")
        return known.caller

    async def _reload(self, key_id: str, stale: _Known | None) -> _Known:
        async def load() -> _Known:
            row = await self._load_key(key_id)
            now = time.monotonic()
            if row is None:
                known = _Known(ANONYMOUS, b"", now)
            else:
                user_id = row["user_id"]
                caller = Caller(user_id, key_id, owns=owner_marker(user_id))
                known = _Known(caller, bytes(row["secret_hash"]), now)
            self._remember(key_id, known)
            return known

        try:
            return await self._loads.run(key_id, load)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if stale is not None and stale.secret_hash:
                return stale  # PostgreSQL is away: nothing can be revoked meanwhile
            raise

    def _remember(self, key_id: str, known: _Known) -> None:
        if len(self._known) >= KEY_CACHE_MAX_ITEMS:
            self._known.clear()
        self._known[key_id] = known

    def forget(self, key_id: str) -> None:
        """Called by the process that revokes a key: it is refused here at once."""
        self._known.pop(key_id, None)
