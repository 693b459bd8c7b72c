"""Which stored objects this worker process is writing, so that no deletion here takes one that a
job is about to reference.

Keys are content-addressed: two jobs of one product (a reprocess racing the job it supersedes, a
source removed and added again) may upload the very same key, and one job's clean-up must not
delete what the other is about to record. A job holds each key it uploads from just before the
upload until its database write is over; a deletion skips the keys held, and marks the others
as being deleted, so that a job that wants one of them waits until it is gone and uploads it
again. A key a deletion skipped is remembered: the job whose release is the key's last takes it
over, and deletes it unless the product references it then (the product deleted, or its image
removed, while the job was finishing its write). A product's jobs and clean-ups all travel on one partition (keyed by its id), so one
process sees them all; the garbage collection, which may run elsewhere, has its grace period.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class KeyClaims:
    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._deleting: dict[str, asyncio.Event] = {}
        self._deferred: set[str] = set()  # held keys a deletion skipped

    def held(self, key: str) -> bool:
        return key in self._held

    async def hold(self, key: str) -> None:
        """Holds `key` (counted: several jobs may), once no deletion of it is under way."""
        while (deleted := self._deleting.get(key)) is not None:
            await deleted.wait()
        self._held[key] += 1

    def release(self, key: str) -> bool:
        """Lets go of one hold; True when it was the last and a deletion skipped the key
        meanwhile: the caller is to delete it (if nothing references it)."""
        self._held[key] -= 1
        if self._held[key] > 0:
            return False
        del self._held[key]
        if key in self._deferred:
            self._deferred.discard(key)
            return True
        return False

    @contextmanager
    def deleting(self, keys: Iterable[str]) -> Iterator[list[str]]:
        """The keys (of `keys`, once each) nobody holds and no other deletion is taking: they
        are this deletion's until the block ends."""
        unique = list(dict.fromkeys(keys))
        self._deferred.update(k for k in unique if k in self._held)
        mine = [k for k in unique if k not in self._held and k not in self._deleting]
        for key in mine:
            self._deleting[key] = asyncio.Event()
        try:
            yield mine
        finally:
            for key in mine:
                self._deleting.pop(key).set()


class JobUploads:
    """The keys one job uploads, each held once, released together when its write is over."""

    def __init__(self, claims: KeyClaims) -> None:
        self.claims = claims
        self.keys: set[str] = set()
        # Keys a deletion asked for while this job held them, whose last hold was this job's.
        self.deferred: set[str] = set()
        self._released = False

    async def hold(self, key: str) -> None:
        if key in self.keys:
            return  # two sources of the job with the same bytes: one key, held once
        self.keys.add(key)
        try:
            await self.claims.hold(key)
        except BaseException:
            self.keys.discard(key)
            raise

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.deferred = {key for key in self.keys if self.claims.release(key)}
