"""Who is calling: bearer keys verified in-process, coherent across API processes.

A verified key is remembered for at most `KEY_CACHE_TTL_S`, counted from the moment its row was
asked for, so a cached read costs a hash and a dict lookup, not a database query (and not even an
await: `remembered` is synchronous), and a key revoked in any process is refused by every process
within that time. The revoking process forgets it at once, and a load that was already in flight
when it did cannot bring it back. While PostgreSQL is unreachable a remembered key keeps working
(asked for again at most once per `KEY_CACHE_TTL_S`, so an outage does not cost every request a
failed connection): nothing can be revoked then anyway, and cached reads stay up.

Admin keys come from the settings; only their SHA-256 digests are kept, compared with
`hmac.compare_digest`, every one of them on every check, so timing says nothing about which.
User keys (`catk_…`, a shape admin keys may not have) skip that check.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from catalogue.product_json import owner_marker
from server.api_keys import KEY_ID_LENGTH, PREFIX, TOKEN_LENGTH, parse_token, secret_matches
from server.singleflight import SingleFlight

KEY_CACHE_TTL_S = 1.0
KEY_CACHE_MAX_ITEMS = 100_000
# Where a key's id sits in `Bearer catk_<id>_<secret>`, the Authorization value of the hot path.
_BEARER_PREFIX = f"Bearer {PREFIX}"
_BEARER_LENGTH = len("Bearer ") + TOKEN_LENGTH
_BEARER_ID_START = len(_BEARER_PREFIX)
_BEARER_ID_END = _BEARER_ID_START + KEY_ID_LENGTH


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated (or anonymous) sender of a request; one object per key, reused by
    every request that sends it, so a request allocates nothing to know who it is."""

    user_id: int | None  # None for admins and anonymous callers
    key_id: str | None  # a user key's public id; 'admin-N' for the N-th of ADMIN_API_KEYS
    is_admin: bool = False
    # What this user's rendered products hold (catalogue.product_json.owner_marker).
    owns: bytes = b""
    # The names of this key's read and write budgets (server/rate_limits.py).
    reads_bucket: str = ""
    writes_bucket: str = ""

    @property
    def authenticated(self) -> bool:
        return self.is_admin or self.user_id is not None

    def may_act_for(self, user_id: int) -> bool:
        return self.is_admin or self.user_id == user_id


def user_caller(user_id: int, key_id: str) -> Caller:
    return Caller(
        user_id,
        key_id,
        owns=owner_marker(user_id),
        reads_bucket=f"reads:key:{key_id}",
        writes_bucket=f"writes:key:{key_id}",
    )


def admin_caller(number: int) -> Caller:
    """The caller of the `number`-th admin key (1-based, in ADMIN_API_KEYS order): logs and
    idempotency records name it by its position, never by anything derived from the key."""
    return Caller(None, f"admin-{number}", is_admin=True)


ANONYMOUS = Caller(None, None)


class InvalidToken(Exception):
    """Unknown, revoked or malformed: the answer is 401 whichever, so keys cannot be probed."""


@dataclass(slots=True)
class _Known:
    """What a key id named when last loaded; an id with no row is remembered too (with no
    hash), so random tokens cannot make every request a database query."""

    caller: Caller
    secret_hash: bytes
    loaded_at: float  # when the load that read it began: its row is at least that fresh
    # The whole Authorization value (`Bearer <token>`) whose secret last matched `secret_hash`,
    # in memory only and only as long as this row is (a reload starts without one): the hot path
    # compares a request's value with it in constant time instead of hashing the secret again,
    # ~0.1 µs instead of ~0.9.
    verified_bearer: str = ""


KeyLoader = Callable[[str], Awaitable[asyncpg.Record | None]]
# InternalClientError: a pooled connection PostgreSQL terminated while idle (server/middleware.py).
_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


class Authenticator:
    def __init__(self, load_key: KeyLoader, admin_keys: tuple[str, ...]) -> None:
        self._load_key = load_key
        self._admin_digests = tuple(hashlib.sha256(k.encode()).digest() for k in admin_keys)
        self._admins = tuple(admin_caller(n) for n in range(1, len(admin_keys) + 1))
        self._known: dict[str, _Known] = {}
        self._loads: SingleFlight[_Known] = SingleFlight()
        # Keys this process revoked, and when: a load begun before then is not remembered.
        self._forgotten: dict[str, float] = {}

    def _admin(self, token: str) -> Caller | None:
        digest = hashlib.sha256(token.encode()).digest()
        matched = -1
        for number, admin in enumerate(self._admin_digests):
            if hmac.compare_digest(digest, admin):
                matched = number
        return self._admins[matched] if matched >= 0 else None

    def recent_bearer(self, authorization: str, now: float) -> Caller | None:
        """The hot path's question, without raising, on a request's whole `Authorization` value:
        the user caller of `Bearer <well-formed key>` whose id this process verified less than
        KEY_CACHE_TTL_S before `now` and whose secret matches; None for anything else
        (`remembered` then gives the full answer, other spellings of the scheme included).

        The value is compared in constant time with the last one that matched this row's hash
        (the same key sent again, as every request of a client does), without cutting the token
        out of it; only a value that differs from it has its secret hashed and compared with the
        hash (the memo is then replaced)."""
        if (
            len(authorization) != _BEARER_LENGTH
            or not authorization.startswith(_BEARER_PREFIX)
            or authorization[_BEARER_ID_END] != "_"
            or not authorization.isascii()  # compare_digest takes ASCII text only
        ):
            return None
        known = self._known.get(authorization[_BEARER_ID_START:_BEARER_ID_END])
        if known is None or now - known.loaded_at >= KEY_CACHE_TTL_S or not known.secret_hash:
            return None
        if known.verified_bearer and hmac.compare_digest(authorization, known.verified_bearer):
            return known.caller
        if secret_matches(authorization[_BEARER_ID_END + 1 :], known.secret_hash):
            known.verified_bearer = authorization
            return known.caller
        return None

    def remembered(self, token: str) -> Caller | None:
        """Without I/O: the caller of an admin key or of a user key verified less than
        KEY_CACHE_TTL_S ago; None when the key must be loaded (`caller`); InvalidToken when
        the token names no caller (malformed, or a wrong secret for a remembered id)."""
        parsed = parse_token(token)
        if parsed is None:
            if self._admin_digests and (admin := self._admin(token)) is not None:
                return admin
            raise InvalidToken("malformed")
        known = self._known.get(parsed[0])
        if known is None or time.monotonic() - known.loaded_at >= KEY_CACHE_TTL_S:
            return None
        if not known.secret_hash or not secret_matches(parsed[1], known.secret_hash):
            raise InvalidToken("unknown")
        return known.caller

    def verified_before(self, token: str) -> bool:
        """Whether the token's key id named a key when this process last asked (so asking again
        is a refresh, not a guess)."""
        parsed = parse_token(token)
        known = self._known.get(parsed[0]) if parsed is not None else None
        return known is not None and bool(known.secret_hash)

    async def caller(self, token: str) -> Caller:
        """The caller a bearer token names, loading its key if need be; InvalidToken when it
        names none."""
        caller = self.remembered(token)
        if caller is not None:
            return caller
        parsed = parse_token(token)
        assert parsed is not None  # remembered() raised for anything else
        key_id, secret = parsed
        known = await self._reload(key_id, self._known.get(key_id))
        if not known.secret_hash or not secret_matches(secret, known.secret_hash):
            raise InvalidToken("unknown")
        return known.caller

    async def _reload(self, key_id: str, stale: _Known | None) -> _Known:
        async def load() -> _Known:
            started = time.monotonic()
            row = await self._load_key(key_id)
            if row is None:
                known = _Known(ANONYMOUS, b"", started)
            else:
                known = _Known(
                    user_caller(row["user_id"], key_id), bytes(row["secret_hash"]), started
                )
            forgotten = self._forgotten.get(key_id)
            if forgotten is None or forgotten < started:
                self._remember(key_id, known)
            return known

        try:
            return await self._loads.run(key_id, load)
        except _UNAVAILABLE:
            if stale is not None and stale.secret_hash:
                # PostgreSQL is away: nothing can be revoked meanwhile. Ask again in a while,
                # not on every request.
                self._remember(key_id, _Known(stale.caller, stale.secret_hash, time.monotonic()))
                return stale
            raise

    def _remember(self, key_id: str, known: _Known) -> None:
        if len(self._known) >= KEY_CACHE_MAX_ITEMS:
            self._known.clear()
        self._known[key_id] = known

    def forget_user(self, user_id: int) -> None:
        """Called by the process that deletes a user: every key of theirs it remembers is
        refused here at once (the rows are gone with the user)."""
        for key_id in [k for k, known in self._known.items() if known.caller.user_id == user_id]:
            self.forget(key_id)

    def forget(self, key_id: str) -> None:
        """Called by the process that revokes a key: it is refused here at once."""
        now = time.monotonic()
        self._known.pop(key_id, None)
        if len(self._forgotten) >= KEY_CACHE_MAX_ITEMS:
            self._forgotten = {
                k: t for k, t in self._forgotten.items() if now - t < 2 * KEY_CACHE_TTL_S
            }
        self._forgotten[key_id] = now
