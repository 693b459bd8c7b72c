"""Rate limits on the real Redis: one budget shared by every API process, leases included."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as redis

from catalogue.cache import connect
from config.rates import Rate
from server.rate_limits import RateLimiter


@pytest.fixture
async def client(settings):
    c = redis.Redis.from_url(settings.redis_url)
    yield c
    await c.aclose()


def bucket() -> str:
    return f"test:{uuid.uuid4().hex}"


async def admitted(limiter: RateLimiter, name: str, rate: Rate, tries: int) -> int:
    return sum([(await limiter.take(name, rate)).allowed for _ in range(tries)])


async def test_two_processes_together_never_admit_more_than_the_limit(client):
    first, second = RateLimiter(client, share=2), RateLimiter(client, share=2)
    name, rate = bucket(), Rate(100, 60.0)  # slow refill: the burst is all there is
    a = await admitted(first, name, rate, 80)
    b = await admitted(second, name, rate, 80)
    assert a == 80  # the first process leased freely while the bucket was full
    assert a + b <= 100
    assert b >= 100 - 80 - 100 // 20  # the other got what was left, less one unspent lease


async def test_a_refusal_carries_retry_after_and_the_ratelimit_fields(client):
    limiter, name, rate = RateLimiter(client, share=1), bucket(), Rate(3, 60.0)
    verdicts = [await limiter.take(name, rate) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    refused = verdicts[3].headers()
    assert refused["RateLimit-Limit"] == "3"
    assert refused["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused["Retry-After"]) <= 20  # one token back: a third of a minute
    assert 40 <= int(refused["RateLimit-Reset"]) <= 60  # the whole burst back


async def test_a_raised_limit_starts_the_budget_whole_and_never_negative(client):
    # A budget spent under 5/min (its debt is a minute long), then the setting raised to
    # 1000/s: the new rate's budget is there at once, its remaining counted from its limit.
    name = bucket()
    low = RateLimiter(client, share=1)
    assert await admitted(low, name, Rate(5, 60.0), 6) == 5
    high = RateLimiter(client, share=1)  # another process, started with the new setting
    verdict = await high.take(name, Rate(1000, 1.0))
    assert verdict.allowed
    assert 0 <= verdict.remaining <= 999
    assert int(verdict.headers()["RateLimit-Reset"]) <= 1


async def test_a_refusal_is_remembered_without_asking_redis_again(client):
    limiter, name, rate = RateLimiter(client, share=1), bucket(), Rate(1, 60.0)
    assert (await limiter.take(name, rate)).allowed
    assert not (await limiter.take(name, rate)).allowed
    remembered = limiter.spend_leased(name)
    assert remembered is not None
    assert not remembered.allowed


async def test_an_all_or_nothing_take_spends_nothing_when_it_does_not_fit(client):
    limiter, name, rate = RateLimiter(client, share=1), bucket(), Rate(10, 3600.0)
    assert (await limiter.take(name, rate, 7, lease=False)).allowed
    refused = await limiter.take(name, rate, 4, lease=False)
    assert not refused.allowed
    assert refused.remaining == 3
    assert (await limiter.take(name, rate, 3, lease=False)).allowed


async def test_with_redis_down_each_process_keeps_its_share():
    dead = connect("redis://127.0.0.1:1/0")  # the API's client: no retries, short timeouts
    try:
        limiter = RateLimiter(dead, share=2)
        assert await admitted(limiter, bucket(), Rate(10, 60.0), 10) == 5
    finally:
        await dead.aclose()
