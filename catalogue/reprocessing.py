"""Reprocessing one product: its images processed again, with the image settings the workers run
now, while the current outputs stay shown until the new ones are ready.

One transaction, under the row's lock: every entry becomes pending at the product's next
revision (catalogue.image_state.reprocess, keeping its output), and the image job of that
revision goes into the outbox with it, and so does its `product.updated` event. A job still running for an older revision then lands
nothing (compressor/results.py), and when the new job's results land, the outputs they replace
are deleted through a `DeleteObjects` job. After the commit, the new row goes into the cache
(version-guarded), so readers see the pending state at once.

Used by `python -m compressor.reprocess` (in bulk) and by the API's
`POST /products/{id}/reprocess`: it touches only the database and the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson

from catalogue import events, image_state
from catalogue.jobs import ImageJob, encode_job, job_key
from catalogue.product_json import render_product
from config import Settings
from db import outbox, products
from db.outbox import OutboxMessage
from db.pool import Connection

Entries = Sequence[dict[str, Any]]
# Says why a product (its entries, read under the lock) is not to be reprocessed, or None.
Skip = Callable[[Entries], str | None]

MISSING, NO_IMAGES = "missing", "no_images"


class FreshCache(Protocol):
    """catalogue.cache.ProductCache's put_fresh: stores over an older version only."""

    async def put_fresh(self, product_id: int, version: int, body: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """What became of one product: queued at `revision` (`row` is the product as written), or
    not, and why (`skipped`: missing, no_images, or the reason a Skip gave)."""

    product_id: int
    queued: bool
    skipped: str | None = None
    revision: int | None = None
    row: asyncpg.Record | None = None


async def reprocess_product(
    conn: Connection,
    settings: Settings,
    cache: FreshCache | None,
    product_id: int,
    *,
    skip: Skip | None = None,
) -> Reprocessed:
    """Queues the product's images for processing again (see the module), unless it is gone,
    has no images, or `skip` names a reason. `conn` must not be in a transaction: this one
    commits before the cache is written. `cache` None leaves the cache alone."""
    async with conn.transaction():
        locked = await products.lock_images(conn, product_id)
        if locked is None:
            return Reprocessed(product_id, False, MISSING)
        entries = orjson.loads(locked["images"])
        if (reason := why_not(entries, skip)) is not None:
            return Reprocessed(product_id, False, reason)
        revision = locked["images_revision"] + 1
        change = image_state.reprocess(entries, revision)
        row = await products.save_images(
            conn,
            product_id,
            change.entries,
            status=image_state.processing_status(change.entries),
            revision=revision,
        )
        job = ImageJob(product_id, change.to_process, revision)
        message = OutboxMessage(
            settings.kafka_jobs_topic, job_key(product_id), encode_job(job).decode()
        )
        await outbox.insert(conn, message)
        body = render_product(row)
        await outbox.insert(
            conn,
            events.product_event(
                events.UPDATED, product_id, row["user_id"], body, settings.kafka_events_topic
            ),
        )
    if cache is not None:
        await cache.put_fresh(product_id, row["version"], body)
    return Reprocessed(product_id, True, None, revision, row)


def why_not(entries: Entries | None, skip: Skip | None = None) -> str | None:
    """Why a product with these entries (None: no product) is not reprocessed, or None."""
    if entries is None:
        return MISSING
    if not entries:
        return NO_IMAGES
    return skip(entries) if skip is not None else None


# -- reasons to skip a product, for the bulk command (and any caller that wants them) ----------


def skip_pending(entries: Entries) -> str | None:
    """A product still being processed is left to the job under way."""
    return "pending" if image_state.processing_status(entries) == "pending" else None


def skip_unless_status(statuses: Iterable[str]) -> Skip:
    """Only products whose processing status is one of `statuses` (it may have changed since
    they were selected)."""
    wanted = frozenset(statuses)

    def skip(entries: Entries) -> str | None:
        status = image_state.processing_status(entries)
        return None if status in wanted else f"now_{status}"

    return skip


def skip_unless_outdated(fingerprint: str) -> Skip:
    """Only products showing an output of other image settings (catalogue/fingerprint.py)."""

    def skip(entries: Entries) -> str | None:
        return None if image_state.outdated(entries, fingerprint) else "up_to_date"

    return skip


def all_of(*skips: Skip) -> Skip:
    """The first reason any of `skips` gives."""

    def skip(entries: Entries) -> str | None:
        return next((r for s in skips if (r := s(entries)) is not None), None)

    return skip
