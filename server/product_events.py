"""Who is watching which product (GET /products/{id}/events), and waking them when it changes.

Both invalidation feeds call `notify` for every product they invalidate (server/invalidation.py
from Redis, server/change_feed.py from PostgreSQL), so a change made through any API process,
or by the worker, reaches the streams of every process. A feed that was lost calls
`notify_all` once it listens again: whatever changed meanwhile went unheard.

The hub carries no data, only "look again": each stream re-reads its product from PostgreSQL
(server/product_stream.py), so a notification that comes twice (once per feed), or for a change
already sent, costs a read and sends nothing. A watcher is an asyncio.Event: notifications
arriving while its stream is busy fold into one.

Costs: nothing on the read path (the hub is not on it), and a dict lookup per invalidation of a
product no one in this process watches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class ProductEvents:
    def __init__(self, *, max_streams: int) -> None:
        self.max_streams = max_streams
        self.closing = False  # the application is shutting down: streams end, none start
        self._watchers: dict[int, set[asyncio.Event]] = {}
        self._streams = 0

    def notify(self, product_id: int) -> None:
        """`product_id` may have changed (or gone): its watchers look again."""
        watchers = self._watchers.get(product_id)
        if watchers is not None:
            for changed in watchers:
                changed.set()

    def notify_all(self) -> None:
        """Any product may have changed: every watcher looks again."""
        for watchers in self._watchers.values():
            for changed in watchers:
                changed.set()

    def close(self) -> None:
        """On shutdown: every stream wakes, sees `closing` and ends."""
        self.closing = True
        self.notify_all()

    @property
    def full(self) -> bool:
        return self._streams >= self.max_streams

    @property
    def streams(self) -> int:
        """The streams open in this process."""
        return self._streams

    def watched(self) -> int:
        """How many products have a watcher (0 once every stream has ended)."""
        return len(self._watchers)

    @contextlib.contextmanager
    def watch(self, product_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever `product_id` may have changed, while the block runs (the
        caller clears it before each look). Leaving the block, however, forgets it."""
        changed = asyncio.Event()
        watchers = self._watchers.setdefault(product_id, set())
        watchers.add(changed)
        self._streams += 1
        try:
            yield changed
        finally:
            self._streams -= 1
            watchers.discard(changed)
            if not watchers:  # a set is dropped only once empty, so this one is still ours
                del self._watchers[product_id]
