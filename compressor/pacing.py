"""A token bucket, in process: paces a loop to a rate (`python -m compressor.reprocess --rate`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`take()` returns at once while tokens are left, then waits until the next one comes back:
    `rate_per_s` on average, at most `burst` at once."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self.tokens = burst
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now

    async def take(self) -> None:
        self._refill()
        if self.tokens < 1:
            await self.sleep((1 - self.tokens) / self.rate_per_s)
            self._refill()
        self.tokens -= 1
