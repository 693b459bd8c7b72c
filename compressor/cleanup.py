"""Deleting stored objects nothing references any more: a `DeleteObjects` job (a product deleted,
images removed or replaced: it travels through the outbox with the change that made them
garbage), and the uploads of a job that came too late to land (`discard`).

Keys are content-addressed, so a key to delete may be referenced again by the time the deletion
runs (the source was added back, a reprocess produced the same bytes): the product's current
entries are read after the keys are claimed for deletion (compressor.claims), and every key
they reference is kept. Deleting an object that is not there is no error, so a redelivered
clean-up does nothing more. Only keys of the product's own namespace are ever deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol, TypeVar

import asyncpg

from catalogue import image_state
from catalogue.images import KEY_PATTERN
from catalogue.jobs import DeleteObjects
from catalogue.retry import RetriesExhausted, RetryPolicy, retry
from compressor.claims import KeyClaims
from compressor.errors import JobExhausted, classify
from compressor.metrics import WorkerMetrics
from db import products

log = logging.getLogger("compressor")
T = TypeVar("T")


class Deleter(Protocol):
    async def delete(self, key: str) -> None: ...


def belongs_to(product_id: int, key: str) -> bool:
    """Whether `key` is one of the product's objects (catalogue.images.image_key)."""
    return key.startswith(f"products/{product_id}/") and KEY_PATTERN.fullmatch(key) is not None


class ObjectCleanup:
    def __init__(
        self,
        db: asyncpg.Pool,
        storage: Deleter,
        claims: KeyClaims,
        metrics: WorkerMetrics,
        *,
        retry_policy: RetryPolicy,
    ) -> None:
        self.db = db
        self.storage = storage
        self.claims = claims
        self.metrics = metrics
        self.retry_policy = retry_policy

    async def run(self, job: DeleteObjects) -> int:
        """A clean-up job: raises JobExhausted when storage or the database keep failing (the
        job is dead-lettered, and `python -m compressor.dlq replay` can run it again)."""
        try:
            return await self.delete(job.product_id, job.keys, reason="delete_objects")
        except RetriesExhausted as exhausted:
            gave_up = JobExhausted(classify(exhausted.last).detached(), exhausted.attempts)
        raise gave_up  # outside the except: it carries nothing of the failed attempts

    async def discard(self, product_id: int, keys: Collection[str], *, reason: str) -> int:
        """Best effort, for a job's own uploads that nothing took: what fails here is left to
        the garbage collection (compressor/gc.py), and logged."""
        if not keys:
            return 0
        try:
            return await self.delete(product_id, keys, reason=reason)
        except Exception as exc:
            log.warning(
                "objects.discard_failed",
                extra={"product_id": product_id, "keys": len(keys), "error": repr(exc)},
            )
            return 0

    async def delete(self, product_id: int, keys: Collection[str], *, reason: str) -> int:
        """Deletes those of `keys` that the product's entries do not reference; returns how
        many. Raises RetriesExhausted when a step fails on every attempt."""
        where = {"product_id": product_id, "reason": reason}
        unique = list(dict.fromkeys(keys))
        own = [k for k in unique if belongs_to(product_id, k)]
        if len(own) < len(unique):
            foreign = [k for k in unique if k not in own][:20]
            log.error("objects.foreign_keys_refused", extra={**where, "keys": foreign})
        with self.claims.deleting(own) as candidates:
            if not candidates:
                return 0
            entries = await self._retried(
                lambda: products.image_entries(self.db, product_id), "objects.load", where
            )
            referenced = image_state.referenced_keys(entries or [])
            doomed = [k for k in candidates if k not in referenced]
            # Every deletion ends before the keys are released, the failed ones too.
            done = await asyncio.gather(
                *(self._delete_one(key, where) for key in doomed), return_exceptions=True
            )
        if failed := [e for e in done if isinstance(e, BaseException)]:
            raise failed[0]
        self.metrics.objects_deleted.labels(reason).inc(len(doomed))
        log.info(
            "objects.deleted",
            extra={
                **where,
                "deleted": len(doomed),
                "kept_referenced": len(candidates) - len(doomed),
                "kept_in_use": len(own) - len(candidates),
            },
        )
        return len(doomed)

    async def _delete_one(self, key: str, where: dict[str, object]) -> None:
        await self._retried(
            lambda: self.storage.delete(key), "objects.delete", {**where, "key": key}
        )

    async def _retried(
        self, call: Callable[[], Awaitable[T]], what: str, where: dict[str, object]
    ) -> T:
        return await retry(
            call,
            self.retry_policy,
            what=what,
            is_transient=lambda error: classify(error).transient,
            log_extra=where,
        )
