"""Redis cache-aside for products, storing the ready-to-send JSON bytes.

A value is the row's version, a newline, and the product's JSON (`frame`); the version is the
products table's `version` column, raised by every write of the row.

Rules that keep it correct:
- Readers fill the cache with SET NX: a reader holding an old row can never overwrite a fresh
  value.
- Writers of fresh values (creation, changes, deletion, the worker after processing) store only
  over an older version, and tell every API process in the same round trip (one Lua script): two
  writers racing leave the newer, whichever lands last. Product creation thus never replaces the
  worker's result, which may land first.
- A deleted product leaves a tombstone (an empty value at a version above any), so no reader
  holding the old row can bring it back.
- Unknown ids are cached briefly as an empty value (negative cache).
- When Redis fails, calls bypass it for `retry_after_s` instead of failing each request, and the
  error is logged once per such interval; caching resumes by itself.
"""

from __future__ import annotations

import enum
import logging
import time

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from catalogue.coalesced_get import CoalescedGet

log = logging.getLogger(__name__)

KEY_PREFIX = "product:v2:"  # v2: values framed with the row's version
# Writers of fresh values announce the product id here; API processes drop their local copy.
INVALIDATION_CHANNEL = "product:v1:invalidations"
NOT_FOUND = b""
# What a call raises when Redis is down or unreachable (the socket errors come through as they
# are), for callers that retry on their own: see put_fresh_or_raise.
CACHE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)
# The version of a deleted product's tombstone: above any row's.
TOMBSTONE_VERSION = 2**62
# SET and PUBLISH unless the key holds this version or a newer one. ARGV: value, version, ttl,
# channel, message.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
    local newline = string.find(current, '\\n', 1, true)
    local version = newline and tonumber(string.sub(current, 1, newline - 1))
    if version and version >= tonumber(ARGV[2]) then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


def frame(version: int, body: bytes) -> bytes:
    return b"%d\n%s" % (version, body)


def unframe(value: bytes) -> bytes:
    """The product's JSON (NOT_FOUND for a cached 404 or a tombstone) of a stored value."""
    return value.partition(b"\n")[2]


def unframe_versioned(value: bytes) -> tuple[int, bytes]:
    """The version and the product's JSON of a stored value."""
    version, _, body = value.partition(b"\n")
    return int(version), body


class Lookup(enum.Enum):
    MISS = "MISS"
    BYPASS = "BYPASS"


def product_key(product_id: int) -> str:
    return f"{KEY_PREFIX}{product_id}"


def connect(url: str, *, timeout_s: float = 0.5) -> redis.Redis:
    # No client-side retries: a dead Redis must cost one fast failure, then the bypass window.
    # A blocking pool: past 256 commands in flight, the next one waits (up to timeout_s) for a
    # connection instead of failing at once, which would read as "Redis down" and send every
    # request of the process to PostgreSQL for the bypass window.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=256,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


class ProductCache:
    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_s: int,
        negative_ttl_s: int,
        retry_after_s: float = 1.0,
        log_interval_s: float = 10.0,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.retry_after_s = retry_after_s
        self.log_interval_s = log_interval_s
        self._down_until = 0.0
        self._last_error_log = -float("inf")
        self._suppressed = 0
        self._put_if_newer = client.register_script(_PUT_IF_NEWER)
        # Reads of one loop iteration share one MGET (catalogue/coalesced_get.py).
        self._gets = CoalescedGet(client)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + self.retry_after_s
        if now - self._last_error_log >= self.log_interval_s:
            log.warning(
                "cache.unavailable",
                extra={"operation": operation, "error": repr(exc), "suppressed": self._suppressed},
            )
            self._last_error_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1

    async def get(self, product_id: int) -> bytes | Lookup:
        """The cached bytes (NOT_FOUND for a cached 404), Lookup.MISS, or Lookup.BYPASS."""
        got = await self.get_versioned(product_id)
        return got if isinstance(got, Lookup) else got[1]

    async def get_versioned(self, product_id: int) -> tuple[int, bytes] | Lookup:
        """The cached version and bytes, Lookup.MISS, or Lookup.BYPASS."""
        if not self.available:
            return Lookup.BYPASS
        try:
            value = await self._gets.get(product_key(product_id))
        except CACHE_ERRORS as exc:
            self._failed("get", exc)
            return Lookup.BYPASS
        if value is None:
            return Lookup.MISS
        # Bytes from connect()'s client; str only from one made with decode_responses.
        return unframe_versioned(value.encode() if isinstance(value, str) else value)

    async def fill(self, product_id: int, version: int, body: bytes) -> bool:
        """Stores what a reader read (version 0 for an unknown id), unless something is there
        already: anything there is as fresh or fresher."""
        if not self.available:
            return False
        ttl = self.ttl_s if body else self.negative_ttl_s
        try:
            # SET NX answers None when the key exists: nothing was stored.
            stored = await self.client.set(
                product_key(product_id), frame(version, body), ex=ttl, nx=True
            )
        except CACHE_ERRORS as exc:
            self._failed("set", exc)
            return False
        return bool(stored)

    async def put_fresh(self, product_id: int, version: int, body: bytes) -> bool:
        """Stores a value just written to the database, unless the cache holds this version or a
        newer one, and tells every API process to drop its local copy (one round trip for both).
        False if Redis failed or a newer value is there."""
        try:
            return await self.put_fresh_or_raise(product_id, version, body)
        except CACHE_ERRORS as exc:
            self._failed("put_fresh", exc)
            return False

    async def put_fresh_or_raise(self, product_id: int, version: int, body: bytes) -> bool:
        """put_fresh for a caller that retries (the worker): a Redis failure raises one of
        CACHE_ERRORS, and is neither logged here nor opens the bypass window."""
        stored = await self._put_if_newer(
            keys=[product_key(product_id)],
            args=[
                frame(version, body),
                version,
                self.ttl_s,
                INVALIDATION_CHANNEL,
                str(product_id),
            ],
        )
        return bool(stored)

    async def put_new(self, product_id: int, version: int, body: bytes) -> bool:
        """The first value of a product just created: over nothing or a cached 404, never over
        the worker's result (a newer version), which may land first."""
        return await self.put_fresh(product_id, version, body)

    async def put_deleted(self, product_id: int) -> bool:
        """A tombstone for a deleted product: 404 from now on, in Redis and, through the
        invalidation, in every process's memory."""
        return await self.put_fresh(product_id, TOMBSTONE_VERSION, NOT_FOUND)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except CACHE_ERRORS:
            return False
