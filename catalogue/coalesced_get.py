"""Redis GETs that concurrent requests issue within one event-loop iteration, sent as one MGET.

redis-py's asyncio client spends far more CPU per command (~100 µs: a pooled connection taken
and given back, the command packed, the reply parsed) than Redis itself; under load most of a
Redis-tier read is that. The first GET of an iteration leads a batch: it yields to the loop once,
so that the requests ready in the same iteration (aiohttp runs those of one socket read, and
those of many connections, side by side) add their keys, then sends them all in one MGET and
hands each follower its value. A lone request waits for nothing but that one turn of the loop.
A failure of the MGET is every member's failure, as their own GETs would have failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as redis


class _Batch:
    __slots__ = ("followers", "keys")

    def __init__(self, key: str) -> None:
        self.keys = [key]
        self.followers: list[asyncio.Future[Any]] = []  # for keys[1:], in order


class CoalescedGet:
    def __init__(self, client: redis.Redis, *, max_batch: int = 256) -> None:
        self.client = client
        self.max_batch = max_batch
        self._open: _Batch | None = None  # the batch of this iteration, while its keys gather
        self._orphans: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> Any:
        """The value of `key` (None when absent), fetched with the other GETs of this
        iteration."""
        batch = self._open
        if batch is not None:
            follower: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            batch.keys.append(key)
            batch.followers.append(follower)
            if len(batch.keys) >= self.max_batch:
                self._open = None  # full: the next GET leads a new one
            return await follower
        batch = self._open = _Batch(key)
        try:
            await asyncio.sleep(0)  # one turn of the loop: this iteration's GETs join
        except asyncio.CancelledError:
            self._close(batch)
            self._send_for_followers(batch)
            raise
        self._close(batch)
        values = await self._fetch(batch)
        return values[0]

    def _close(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None

    async def _fetch(self, batch: _Batch) -> list[Any]:
        """The batch's values, each follower given its own (or the failure)."""
        keys, followers = batch.keys, batch.followers
        try:
            values = await self.client.mget(keys) if followers else [await self.client.get(keys[0])]
        except BaseException as exc:
            for follower in followers:
                if not follower.done():
                    if isinstance(exc, asyncio.CancelledError):
                        follower.cancel()
                    else:
                        follower.set_exception(exc)
            raise
        for follower, value in zip(followers, values[1:], strict=True):
            if not follower.done():  # a follower cancelled meanwhile (its client went)
                follower.set_result(value)
        return values

    def _send_for_followers(self, batch: _Batch) -> None:
        """The leader was cancelled before sending (its client went): the followers still get
        their values, from a task of their own."""
        if not batch.followers:
            return

        async def send() -> None:
            with contextlib.suppress(Exception):  # given to the followers, who see it
                await self._fetch(batch)

        task = asyncio.get_running_loop().create_task(send())
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)
