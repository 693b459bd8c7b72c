"""An in-process cache of product JSON in front of Redis, kept coherent across processes.

A Redis round trip costs more server CPU than the rest of a cached GET (measured: ~100 µs vs
~34 µs per request), so hot products are also kept in each API process. Coherence:
- Every writer of a fresh value (product creation, the worker after processing) publishes the
  product id on INVALIDATION_CHANNEL in the same round trip as its SET (see catalogue/cache.py);
  each API process subscribes and drops the entry.
- A reader may only store what it fetched if no invalidation arrived in between (the epoch
  check), so a value read just before an invalidation cannot outlive it.
- Every committed change of a row also reaches every process from PostgreSQL (LISTEN/NOTIFY:
  server/change_feed.py): a writer that could not reach Redis (frozen, restarting) still
  commits, and without this second feed the other processes would keep serving the state from
  before its change until the TTL.
- Without a live subscription to every feed the local cache is off (entries dropped, nothing
  stored): a lost invalidation can then never leave a stale entry behind. A short TTL bounds
  the damage of a silently dead connection.
"""

from __future__ import annotations

import time

REDIS, POSTGRES = "redis", "postgres"  # the invalidation feeds


class LocalCache:
    def __init__(self, *, ttl_s: float, max_items: int, feeds: tuple[str, ...] = (REDIS,)) -> None:
        """On (`enabled`) only while every one of `feeds` is subscribed."""
        self.ttl_s = ttl_s
        self.max_items = max_items
        self.feeds = frozenset(feeds)
        self.epoch = 0
        self.enabled = False
        self._live: set[str] = set()
        self._items: dict[int, tuple[float, bytes]] = {}

    def get(self, product_id: int) -> bytes | None:
        item = self._items.get(product_id)
        if item is None:
            return None
        expires_at, body = item
        if expires_at < time.monotonic():
            del self._items[product_id]
            return None
        return body

    def put(self, product_id: int, body: bytes, epoch: int) -> None:
        """Stores `body` read at `epoch`, unless an invalidation happened since."""
        if not self.enabled or epoch != self.epoch or self.max_items == 0:
            return
        if len(self._items) >= self.max_items and product_id not in self._items:
            # dicts keep insertion order: drop the oldest entry.
            del self._items[next(iter(self._items))]
        self._items[product_id] = (time.monotonic() + self.ttl_s, body)

    def invalidate(self, product_id: int) -> None:
        self.epoch += 1
        self._items.pop(product_id, None)

    def enable(self, feed: str = REDIS) -> None:
        """`feed` is subscribed again: what it carried meanwhile is lost, so nothing kept from
        before stays."""
        self._live.add(feed)
        self.epoch += 1
        self._items.clear()
        self.enabled = self._live >= self.feeds

    def disable(self, feed: str = REDIS) -> None:
        self._live.discard(feed)
        self.enabled = False
        self.epoch += 1
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
