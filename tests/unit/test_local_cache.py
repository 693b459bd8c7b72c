"""The in-process cache's coherence rules."""

from __future__ import annotations

import time

from server.local_cache import POSTGRES, REDIS, LocalCache


def enabled(ttl_s: float = 60, max_items: int = 100) -> LocalCache:
    cache = LocalCache(ttl_s=ttl_s, max_items=max_items)
    cache.enable()
    return cache


def test_a_stored_value_is_served():
    cache = enabled()
    cache.put(1, b"one", cache.epoch)
    assert cache.get(1) == b"one"


def test_nothing_is_stored_without_a_live_subscription():
    cache = LocalCache(ttl_s=60, max_items=100)
    cache.put(1, b"one", cache.epoch)
    assert cache.get(1) is None


def test_a_value_read_before_an_invalidation_is_not_stored():
    cache = enabled()
    epoch = cache.epoch  # the reader starts
    cache.invalidate(1)  # a worker publishes a fresh value meanwhile
    cache.put(1, b"old", epoch)
    assert cache.get(1) is None


def test_invalidation_drops_the_entry():
    cache = enabled()
    cache.put(1, b"one", cache.epoch)
    cache.invalidate(1)
    assert cache.get(1) is None


def test_losing_the_subscription_drops_everything():
    cache = enabled()
    cache.put(1, b"one", cache.epoch)
    cache.disable()
    assert cache.get(1) is None
    assert len(cache) == 0


def test_entries_expire(monkeypatch):
    cache = enabled(ttl_s=10)
    cache.put(1, b"one", cache.epoch)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 11)
    assert cache.get(1) is None


def test_the_oldest_entry_makes_room():
    cache = enabled(max_items=2)
    for product_id in (1, 2, 3):
        cache.put(product_id, b"x", cache.epoch)
    assert cache.get(1) is None
    assert cache.get(2) == cache.get(3) == b"x"


def test_zero_items_turns_it_off():
    cache = enabled(max_items=0)
    cache.put(1, b"one", cache.epoch)
    assert cache.get(1) is None


def test_with_two_feeds_it_is_on_only_while_both_are_subscribed():
    cache = LocalCache(ttl_s=60, max_items=10, feeds=(REDIS, POSTGRES))
    cache.enable(REDIS)
    assert not cache.enabled
    cache.put(1, b"x", cache.epoch)
    assert cache.get(1) is None  # nothing is stored while one feed is missing
    cache.enable(POSTGRES)
    assert cache.enabled
    cache.put(1, b"x", cache.epoch)
    assert cache.get(1) == b"x"


def test_losing_either_feed_drops_everything_and_getting_it_back_keeps_nothing_from_before():
    for lost in (REDIS, POSTGRES):
        cache = LocalCache(ttl_s=60, max_items=10, feeds=(REDIS, POSTGRES))
        cache.enable(REDIS)
        cache.enable(POSTGRES)
        cache.put(1, b"x", cache.epoch)
        cache.disable(lost)
        assert not cache.enabled
        assert cache.get(1) is None
        epoch = cache.epoch
        cache.put(1, b"x", epoch)
        cache.enable(lost)
        assert cache.enabled
        assert cache.epoch > epoch
        cache.put(1, b"old", epoch)  # read before the feed came back: refused
        assert cache.get(1) is None
