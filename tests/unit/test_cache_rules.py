"""The cache's behaviour when Redis is unreachable (a closed loopback port: a real failure)."""

from __future__ import annotations

import logging

import pytest

from catalogue.cache import (
    CACHE_ERRORS,
    NOT_FOUND,
    TOMBSTONE_VERSION,
    Lookup,
    ProductCache,
    connect,
    frame,
    product_key,
    unframe,
)


def unreachable_cache(retry_after_s: float = 60.0) -> ProductCache:
    return ProductCache(
        connect("redis://127.0.0.1:1/0"), ttl_s=60, negative_ttl_s=5, retry_after_s=retry_after_s
    )


async def test_unreachable_redis_is_bypassed_not_an_error():
    cache = unreachable_cache()
    assert await cache.get(1) is Lookup.BYPASS
    assert await cache.fill(1, 1, b"{}") is False
    await cache.client.aclose()


async def test_failures_are_logged_once_per_interval_not_per_request(caplog):
    cache = unreachable_cache(retry_after_s=0.0)  # every call really tries Redis
    with caplog.at_level(logging.WARNING, logger="catalogue.cache"):
        for _ in range(20):
            await cache.get(1)
    assert [r.getMessage() for r in caplog.records].count("cache.unavailable") == 1
    await cache.client.aclose()


async def test_within_the_bypass_window_redis_is_not_contacted():
    cache = unreachable_cache()
    await cache.get(1)
    assert not cache.available
    assert await cache.get(2) is Lookup.BYPASS
    await cache.client.aclose()


async def test_fresh_writes_still_try_during_the_bypass_window():
    # A worker's fresh value matters more than saving a round trip: it is attempted anyway.
    cache = unreachable_cache()
    await cache.get(1)
    assert await cache.put_fresh(1, 1, b"{}") is False
    await cache.client.aclose()


async def test_the_worker_s_fresh_write_raises_and_leaves_the_bypass_window_shut():
    # The worker retries on its own: it gets the error, and readers are not sent to PostgreSQL.
    cache = unreachable_cache()
    with pytest.raises(CACHE_ERRORS):
        await cache.put_fresh_or_raise(1, 1, b"{}")
    assert cache.available
    await cache.client.aclose()


def test_product_keys_are_versioned():
    # v2: values framed with the row's version; a v1 value is never read as one.
    assert product_key(5) == "product:v2:5"


def test_a_value_is_the_row_version_and_the_body():
    assert frame(7, b'{"a":1}') == b'7\n{"a":1}'
    assert unframe(frame(7, b'{"a":1}')) == b'{"a":1}'
    assert unframe(frame(TOMBSTONE_VERSION, NOT_FOUND)) == NOT_FOUND
