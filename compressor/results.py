"""What a job leaves behind: the product's image entries in PostgreSQL, then its fresh cached copy.

A job's results land in one transaction, under the row's lock, and only on the entries still
pending at the job's revision (catalogue.image_state.apply_outcomes): a job queued for an older
image list, or for a product deleted since, writes nothing at all (no entries, no cache entry),
and its uploads are the caller's to discard. Outputs a result replaces (a reprocess) are handed
to a `DeleteObjects` job written to the outbox in the same transaction, so a crash between the
write and the clean-up loses nothing; so is the `product.processed` event of a write that ends
the product's processing. Then the cache gets the row's new version, which it stores
only over an older one.

The pipeline records the outcome of a job it ran; the dead letters mark a job that could not
finish failed. Both write the same way, through ProductResults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson

from catalogue import events, image_state
from catalogue.cache_repair import Settle, no_settle
from catalogue.jobs import DeleteObjects, ImageJob, encode_job, job_key
from catalogue.product_json import render_product
from catalogue.retry import RetriesExhausted, RetryPolicy, retry
from compressor.errors import ImageFailure
from db import outbox, products
from db.outbox import OutboxMessage

log = logging.getLogger("compressor")

SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One source of a job: its output (url and storage key of the one shown, every rendition,
    the settings' fingerprint) or its failure."""

    source: str
    url: str | None = None
    failure: ImageFailure | None = None
    key: str | None = None
    fingerprint: str | None = None
    renditions: tuple[dict[str, Any], ...] = ()
    original: dict[str, Any] | None = None

    def stored_keys(self) -> set[str]:
        """The storage keys of its output: every rendition's (the one shown is among them)."""
        keys = {r["key"] for r in self.renditions}
        if self.key is not None:
            keys.add(self.key)
        return keys

    def outcome(self) -> image_state.Outcome:
        if self.failure is not None:
            return image_state.Outcome(self.source, error=str(self.failure))
        return image_state.Outcome(
            self.source,
            url=self.url,
            key=self.key,
            fingerprint=self.fingerprint,
            renditions=self.renditions,
            original=self.original,
        )


def outcome(results: list[ImageResult]) -> str:
    """The job's own outcome: done, partial or failed."""
    failed = sum(1 for r in results if r.failure is not None)
    if failed == 0:
        return "done"
    return "failed" if failed == len(results) else "partial"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a job's write did: `landed` (False: the product changed or went since the job was
    queued, and nothing was written), the product's status after it, and the job's uploads that
    no entry references (to discard)."""

    landed: bool
    product_status: str
    unused: frozenset[str]


class FreshCache(Protocol):
    """The part of catalogue.cache.ProductCache the worker writes through."""

    async def put_fresh_or_raise(self, product_id: int, version: int, body: bytes) -> bool: ...


Entries = list[dict[str, Any]]
Decide = Callable[[Entries], image_state.Change | None]


class ProductResults:
    def __init__(
        self,
        db: asyncpg.Pool,
        cache: FreshCache,
        *,
        retry_policy: RetryPolicy,
        cache_ttl_s: int,
        jobs_topic: str,
        events_topic: str,
        settle: Settle = no_settle,
    ) -> None:
        self.db = db
        self.cache = cache
        self.retry_policy = retry_policy
        self.cache_ttl_s = cache_ttl_s
        self.jobs_topic = jobs_topic
        self.events_topic = events_topic
        # Clears the cache debt a result commits once Redis holds it; a debt left unpaid is
        # repaired from the row (catalogue/cache_repair.py).
        self.settle = settle

    async def awaiting(self, job: ImageJob) -> tuple[str, ...] | None:
        """The job's sources whose entries still wait for it (pending at its revision); None if
        there is no such product.

        A job with nothing left to land on refreshes the product's cached copy first: it may be
        the redelivery of a job whose write landed but whose cache refresh never ran (its
        worker killed, or its partition revoked, between the two), and the cache would hold
        the state from before the write until its TTL (found by the soak). Only an older
        version is replaced, so this is harmless when the refresh did run."""
        entries = await products.image_entries(self.db, job.product_id)
        if entries is None:
            return None
        waiting = set(image_state.awaiting(entries, job.revision))
        sources = tuple(s for s in dict.fromkeys(job.image_urls) if s in waiting)
        if not sources and (row := await products.get_product(self.db, job.product_id)):
            await self._refresh_cache(job.product_id, row)
        return sources

    async def record(self, job: ImageJob, results: Sequence[ImageResult]) -> Recorded:
        """Lands the job's outcomes (one transaction), then refreshes the cache."""
        outcomes = [r.outcome() for r in results]
        uploaded = {key for r in results for key in r.stored_keys()}
        row, entries = await self._write(
            job, lambda entries: image_state.apply_outcomes(entries, job.revision, outcomes)
        )
        unused = frozenset(uploaded - image_state.referenced_keys(entries))
        if row is None:
            return Recorded(False, image_state.processing_status(entries), unused)
        await self._refresh_cache(job.product_id, row)
        return Recorded(True, image_state.processing_status(entries), unused)

    async def mark_failed(self, job: ImageJob, reason: str) -> None:
        """Marks the entries a dead-lettered job leaves pending failed, naming the reason."""
        error = str(ImageFailure("dead_lettered", transient=False, detail=reason))
        row, _ = await self._write(
            job, lambda entries: image_state.fail_pending(entries, job.revision, error)
        )
        if row is None:
            log.info(
                "job.mark_failed_superseded",
                extra={"product_id": job.product_id, "revision": job.revision},
            )
            return
        await self._refresh_cache(job.product_id, row)

    async def _write(self, job: ImageJob, decide: Decide) -> tuple[asyncpg.Record | None, Entries]:
        """The row (None when nothing was written) and the entries after the transaction (an
        empty list for a product that is gone)."""
        async with self.db.acquire() as conn, conn.transaction():
            locked = await products.lock_images(conn, job.product_id)
            if locked is None:
                return None, []
            entries: Entries = orjson.loads(locked["images"])
            change = decide(entries)
            if change is None:
                return None, entries
            row = await products.save_images(
                conn,
                job.product_id,
                change.entries,
                status=image_state.processing_status(change.entries),
                revision=locked["images_revision"],
            )
            if change.unreferenced:
                await outbox.insert(conn, self._delete_message(job.product_id, change.unreferenced))
            before, after = (image_state.processing_status(e) for e in (entries, change.entries))
            if before == image_state.PENDING and after != image_state.PENDING:
                # Processing became terminal: the event commits with the result it announces.
                event = events.product_event(
                    events.PROCESSED,
                    job.product_id,
                    row["user_id"],
                    render_product(row),
                    self.events_topic,
                )
                await outbox.insert(conn, event)
        return row, change.entries

    def _delete_message(self, product_id: int, keys: set[str]) -> OutboxMessage:
        payload = encode_job(DeleteObjects(product_id, tuple(sorted(keys))))
        return OutboxMessage(self.jobs_topic, job_key(product_id), payload.decode())

    async def _refresh_cache(self, product_id: int, row: asyncpg.Record) -> None:
        """Stores the written row in Redis under its version and tells every API process; the
        cache keeps a newer version if one is there already (a change that landed meanwhile).

        Retried with the jobs' backoff: a Redis blip must not leave the pre-processing value
        cached for its whole TTL. If Redis stays unreachable, the database holds the result and
        the job is done all the same; the write's cache debt stays, and the product is written
        again once Redis answers (catalogue/cache_repair.py)."""
        version, body = row["version"], render_product(row)
        try:
            await retry(
                lambda: self.cache.put_fresh_or_raise(product_id, version, body),
                self.retry_policy,
                what="cache.refresh",
                log_extra={"product_id": product_id},
            )
        except RetriesExhausted as exhausted:
            log.error(
                "cache.refresh_failed",
                extra={
                    "product_id": product_id,
                    "attempts": exhausted.attempts,
                    "error": repr(exhausted.last),
                },
            )
            return
        await self.settle(product_id, version)
