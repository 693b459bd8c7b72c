"""The newest committed version of each recently changed product, as PostgreSQL announced it at
commit (server/change_feed.py): a value Redis holds below it is one its writer has not replaced.

Why: a writer commits, then writes Redis; one whose Redis is frozen or restarting gives up and
leaves a cache debt (catalogue/cache_repair.py) that a loop repairs seconds after Redis answers
again. Until then Redis holds the state from before the write, and a client that saw its change
answered would read the older state back: the 10-minute soak (seed 202) read a rename undone
that way 0.6 s after a frozen Redis resumed. With the floors, every API process reads such a
product from PostgreSQL instead, and writes it over the old value.

A floor goes when a read finds Redis at or above it (the common case: the first read after the
writer's refresh) or when this process stored the product itself; the oldest go first beyond
`max_items` (changes no one read again since, whose debts the loop has long repaired unless
Redis stayed away all that while).
"""

from __future__ import annotations

DEFAULT_MAX_ITEMS = 100_000


class VersionFloors:
    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        self.max_items = max_items
        self._floors: dict[int, int] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._floors)

    def raise_to(self, product_id: int, version: int) -> None:
        """PostgreSQL committed `version` of the product (TOMBSTONE_VERSION: its deletion)."""
        floors = self._floors
        current = floors.pop(product_id, None)
        floors[product_id] = version if current is None else max(current, version)
        if len(floors) > self.max_items:
            del floors[next(iter(floors))]

    def stale(self, product_id: int, version: int) -> bool:
        """Whether a cached `version` is older than one committed; at or above the floor, the
        floor has done its job and goes."""
        floor = self._floors.get(product_id)
        if floor is None:
            return False
        if version < floor:
            return True
        del self._floors[product_id]
        return False

    def stored(self, product_id: int, version: int) -> None:
        """This process put `version` into Redis: drops a floor it reaches."""
        floor = self._floors.get(product_id)
        if floor is not None and version >= floor:
            del self._floors[product_id]
