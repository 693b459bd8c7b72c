"""Which offsets may be committed, when jobs of one partition finish out of order.

Kafka commits one position per partition: "everything below this offset is done". Jobs start in
offset order but finish in any order, so the committable position of a partition is its lowest
offset still in flight, or one past the highest finished offset when nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

TP = TypeVar("TP")


class OffsetTracker(Generic[TP]):
    def __init__(self) -> None:
        self._inflight: dict[TP, set[int]] = {}
        self._next: dict[TP, int] = {}  # one past the highest finished offset
        self._committed: dict[TP, int] = {}

    def started(self, tp: TP, offset: int) -> None:
        self._inflight.setdefault(tp, set()).add(offset)

    def finished(self, tp: TP, offset: int) -> None:
        inflight = self._inflight.get(tp)
        if inflight is None or offset not in inflight:
            return  # the partition was revoked meanwhile: its new owner redoes the job
        inflight.remove(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def inflight(self) -> int:
        return sum(len(offsets) for offsets in self._inflight.values())

    def position(self, tp: TP) -> int | None:
        inflight = self._inflight.get(tp)
        if inflight:
            return min(inflight)
        return self._next.get(tp)

    def to_commit(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Positions that moved since they were last committed."""
        result = {}
        for tp in self._inflight.keys() if tps is None else tps:
            position = self.position(tp)
            if position is not None and position > self._committed.get(tp, -1):
                result[tp] = position
        return result

    def committed(self, offsets: dict[TP, int]) -> None:
        for tp, position in offsets.items():
            self._committed[tp] = max(self._committed.get(tp, -1), position)

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._inflight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
