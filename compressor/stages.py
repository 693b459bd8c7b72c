"""A stage of the pipeline (download, compress, upload): its concurrency bound, and what it
shows on /metrics (the images waiting for a slot, the slots in use)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Stage:
    """A concurrency bound with its queue depth and the slots in use, for metrics."""

    def __init__(self, name: str, slots: int) -> None:
        self.name = name
        self._semaphore = asyncio.Semaphore(slots)
        self.waiting = 0
        self.active = 0

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
