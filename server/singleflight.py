"""Collapses concurrent calls for the same key into one: the first caller runs the work, the
others await its result (a cache stampede on a cold key costs one database read per process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        future = self._inflight.get(key)
        if future is not None:
            # shield: one waiter's cancellation must not cancel the shared work.
            return await asyncio.shield(future)
        future = asyncio.ensure_future(work())
        self._inflight[key] = future
        future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)

    def __len__(self) -> int:
        return len(self._inflight)
