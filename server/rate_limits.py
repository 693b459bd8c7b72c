"""Rate limits shared by every API process, at almost no cost per request.

Each budget (a key's reads, its writes, its images; an address's requests) is a GCRA bucket in
Redis (the generic cell rate algorithm of ATM networks, as in redis-cell: one timestamp per
bucket, one atomic step, a burst of one period's worth). A Redis round trip per request would
cost a cached read about three times its own work, so a process *leases* a few tokens at once
(a twentieth of the limit) and spends them locally: a read pays a round trip once per lease.
Every admitted request has consumed a token of the shared bucket, so all processes together
never admit more than the limit; a lease a process does not spend in time is dropped, which can
only admit less.

When Redis fails, each process falls back to a bucket of its own holding its share of the limit
(the limit divided by the API processes) until Redis answers again: limits still hold, roughly,
and nothing answers 500.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import NamedTuple

import redis.asyncio as redis
from multidict import istr
from redis.exceptions import RedisError

from config.rates import Rate

log = logging.getLogger(__name__)

# A bucket's key names its rate too: a timestamp means nothing under another rate, so a changed
# setting starts every budget whole (what a raised limit should do at once; a lowered one
# grants one last period's worth) instead of leaving debt the new rate cannot read.
KEY_PREFIX = "ratelimit:v2:"
# The IETF RateLimit header fields, as multidict's case-insensitive strings: a response's
# headers take them without converting each name per request.
LIMIT_FIELD = istr("RateLimit-Limit")
REMAINING_FIELD = istr("RateLimit-Remaining")
RESET_FIELD = istr("RateLimit-Reset")
LEASE_FRACTION = 20  # a lease holds limit / LEASE_FRACTION tokens (at least one)
LEASE_LIFETIME_S = 1.0
REDIS_RETRY_AFTER_S = 1.0

# ARGV: interval (µs per token), burst (tokens), wanted tokens, partial ('1': grant what is
# there, up to wanted). Returns granted, remaining, µs until the bucket is full, µs until a
# refused take could succeed. Redis's own clock, so every process agrees on "now".
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local partial = ARGV[4] == '1'
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ceiling = now + burst * interval
local available = math.floor((ceiling - tat) / interval)
local grant = want
if available < want then
    if partial then grant = available else grant = 0 end
end
if grant > 0 then
    tat = tat + grant * interval
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local retry = 0
if grant == 0 then
    local need = want
    if partial then need = 1 end
    retry = tat + need * interval - ceiling
end
return {grant, math.floor((ceiling - tat) / interval), tat - now, retry}
"""


def rate_limit_fields(limit: str, remaining: int, reset_s: float) -> dict[str, str]:
    """The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): the limit,
    what remains, and whole seconds until the budget is whole again."""
    return {
        LIMIT_FIELD: limit,
        REMAINING_FIELD: str(remaining),
        RESET_FIELD: str(math.ceil(reset_s)) if reset_s > 0 else "0",
    }


class Verdict(NamedTuple):
    # A tuple, not a frozen dataclass: one is made per request, and a frozen dataclass's
    # __init__ (object.__setattr__ per field) costs four times as much.
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the budget is whole again
    retry_after_s: float = 0.0  # when refused: until the request could pass

    def headers(self) -> dict[str, str]:
        """The RateLimit header fields, and Retry-After on a refusal."""
        headers = rate_limit_fields(str(self.limit), self.remaining, self.reset_s)
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


class LocalBucket:
    """GCRA in this process only: the fallback while Redis is down."""

    __slots__ = ("burst", "interval_s", "tat")

    def __init__(self, rate: Rate) -> None:
        self.burst = rate.limit
        self.interval_s = rate.interval_s
        self.tat = 0.0

    def take(self, now: float, want: int = 1) -> Verdict:
        tat = max(self.tat, now)
        ceiling = now + self.burst * self.interval_s
        available = math.floor((ceiling - tat) / self.interval_s + 1e-9)
        if available < want:
            retry = tat + want * self.interval_s - ceiling
            return Verdict(False, self.burst, available, tat - now, retry)
        self.tat = tat + want * self.interval_s
        remaining = math.floor((ceiling - self.tat) / self.interval_s + 1e-9)
        return Verdict(True, self.burst, remaining, self.tat - now)


class _Lease:
    """Tokens taken from a shared bucket and not spent yet; with none and `refused`, a refusal
    that stands until `expires`."""

    __slots__ = (
        "expires",
        "limit",
        "limit_text",
        "refused",
        "reset_at",
        "shared_remaining",
        "tokens",
    )

    def __init__(
        self,
        tokens: int,
        limit: int,
        shared_remaining: int,
        reset_at: float,
        expires: float,
        *,
        refused: bool = False,
    ) -> None:
        self.tokens = tokens
        self.limit = limit
        self.limit_text = str(limit)
        self.shared_remaining = shared_remaining
        self.reset_at = reset_at
        self.expires = expires
        self.refused = refused


class RateLimiter:
    def __init__(self, client: redis.Redis, *, share: int, max_buckets: int = 100_000) -> None:
        self.client = client
        self.share = share
        self.max_buckets = max_buckets
        self._take = client.register_script(_TAKE)
        self._leases: dict[str, _Lease] = {}
        # Lease refills under way: concurrent requests of one bucket wait for the one refill
        # instead of each taking a lease of its own (which would spend the shared budget many
        # times faster than the requests do, and refuse requests the limit allows).
        self._refills: dict[str, asyncio.Future[None]] = {}
        self._fallback: dict[str, LocalBucket] = {}
        self._redis_down_until = 0.0
        self._last_error_log = -math.inf

    def spend_leased(self, bucket: str) -> Verdict | None:
        """A verdict without I/O: a token from this process's lease on `bucket`, or the refusal
        Redis gave until its retry time passes (a client over its limit cannot make every
        request cost a round trip). None when there is neither: then `take` asks Redis."""
        lease = self._leases.get(bucket)
        if lease is None:
            return None
        now = time.monotonic()
        if now >= lease.expires:
            return None
        if lease.tokens == 0:
            if lease.refused:
                return Verdict(False, lease.limit, 0, lease.reset_at - now, lease.expires - now)
            return None
        lease.tokens -= 1
        return Verdict(
            True, lease.limit, lease.shared_remaining + lease.tokens, lease.reset_at - now
        )

    def spend_leased_fields(self, bucket: str, now: float) -> dict[str, str] | None:
        """The hot path's spend: a token from this process's lease on `bucket`, answered as the
        RateLimit header fields straight away (without a Verdict); None when the lease cannot pay (then `spend_leased`/`take` decide)."""
        lease = self._leases.get(bucket)
        if lease is None or lease.tokens == 0 or now >= lease.expires:
            return None
        lease.tokens -= 1
        return rate_limit_fields(
            lease.limit_text, lease.shared_remaining + lease.tokens, lease.reset_at - now
        )

    def refused(self, bucket: str) -> Verdict | None:
        """The refusal Redis gave `bucket`, while it stands; spends nothing, asks no one."""
        lease = self._leases.get(bucket)
        if lease is None or not lease.refused:
            return None
        now = time.monotonic()
        if now >= lease.expires:
            return None
        return Verdict(False, lease.limit, 0, lease.reset_at - now, lease.expires - now)

    async def take(self, bucket: str, rate: Rate, want: int = 1, *, lease: bool = True) -> Verdict:
        """One request's worth (or `want` tokens at once, all or nothing, with lease=False)."""
        if not lease:
            return await self._take_shared(bucket, rate, want, lease=False)
        while True:
            if (leased := self.spend_leased(bucket)) is not None:
                return leased
            refill = self._refills.get(bucket)
            if refill is None:
                break
            # shield: a waiter's cancellation must not cancel the refill the others wait for.
            await asyncio.shield(refill)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refills[bucket] = done
        try:
            return await self._take_shared(bucket, rate, want, lease=True)
        finally:
            del self._refills[bucket]
            done.set_result(None)

    async def _take_shared(self, bucket: str, rate: Rate, want: int, *, lease: bool) -> Verdict:
        now = time.monotonic()
        if now < self._redis_down_until:
            return self._local(bucket, rate, now, want)
        lease_size = max(1, rate.limit // LEASE_FRACTION) if lease else want
        interval_us = max(1, round(rate.interval_s * 1_000_000))
        try:
            granted, remaining, full_in_us, retry_us = await self._take(
                keys=[f"{KEY_PREFIX}{bucket}:{rate}"],
                args=[interval_us, rate.limit, lease_size, "1" if lease else "0"],
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()  # a failure may take a connect timeout to show
            self._failed(exc, now)
            return self._local(bucket, rate, now, want)
        self._fallback.pop(bucket, None)
        reset_s = full_in_us / 1_000_000
        if granted == 0:
            retry_s = retry_us / 1_000_000
            if lease:
                refusal = _Lease(0, rate.limit, 0, now + reset_s, now + retry_s, refused=True)
                self._keep_lease(bucket, refusal)
            return Verdict(False, rate.limit, remaining, reset_s, retry_s)
        if lease:
            kept = _Lease(granted - 1, rate.limit, remaining, now + reset_s, now + LEASE_LIFETIME_S)
            self._keep_lease(bucket, kept)
            return Verdict(True, rate.limit, remaining + granted - 1, reset_s)
        return Verdict(True, rate.limit, remaining, reset_s)

    def _keep_lease(self, bucket: str, lease: _Lease) -> None:
        if len(self._leases) >= self.max_buckets:
            self._leases.clear()  # dropping leases only ever admits less
        self._leases[bucket] = lease

    def _local(self, bucket: str, rate: Rate, now: float, want: int) -> Verdict:
        local = self._fallback.get(bucket)
        if local is None:
            if len(self._fallback) >= self.max_buckets:
                self._fallback.clear()
            share = Rate(max(1, rate.limit // self.share), rate.period_s)
            local = self._fallback[bucket] = LocalBucket(share)
        return local.take(now, want)

    def _failed(self, exc: Exception, now: float) -> None:
        self._redis_down_until = now + REDIS_RETRY_AFTER_S
        if now - self._last_error_log >= 10.0:
            self._last_error_log = now
            log.warning(
                "ratelimit.redis_unavailable",
                extra={"error": repr(exc), "fallback_share": f"1/{self.share}"},
            )
