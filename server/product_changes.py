"""Changing and deleting products (and users with theirs), so that nobody is served the old
state once a write has answered.

Each write is one transaction on the locked row: what it changes, the jobs it queues, the
stored objects it leaves unreferenced (as a `delete_objects` clean-up through the outbox, so a
crash loses nothing) and its event (`product.updated`, `product.deleted`) commit together. Then the new representation goes to the cache over any
older version, with the invalidation of every process's copy, in one round trip: two writers
racing leave the newer whichever lands last, and a deleted product leaves a tombstone that no
reader holding the old row can overwrite.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
import orjson

from catalogue import events, image_state
from catalogue.cache import CACHE_ERRORS, NOT_FOUND, TOMBSTONE_VERSION, ProductCache
from catalogue.cache_repair import Settle, no_settle
from catalogue.jobs import DeleteObjects, ImageJob, Job, encode_job, job_key
from catalogue.product_json import Row, render_product
from catalogue.reprocessing import MISSING, reprocess_product
from catalogue.retry import RetriesExhausted, RetryPolicy, retry
from config import Settings
from db import products, users
from db.outbox import OutboxMessage, insert
from db.pool import Connection, bounded_acquire
from server.errors import ApiError
from server.etags import etag_of, match_fails
from server.patches import ProductPatch

log = logging.getLogger(__name__)

CACHE_RETRY = RetryPolicy(base_s=0.05, cap_s=0.5, max_attempts=4)
# Charges the caller's image budget for the new sources a change queues (server/access.py).
ChargeImages = Callable[[int], Awaitable[None]]


def not_found(product_id: int) -> ApiError:
    return ApiError(404, f"product {product_id} not found")


class ProductChanges:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        cache: ProductCache,
        on_user_deleted: Callable[[int], None] = lambda _user_id: None,
        settle: Settle = no_settle,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.cache = cache
        # Clears the cache debt a write commits once Redis holds its result; a debt left
        # unpaid is repaired from the row (catalogue/cache_repair.py).
        self.settle = settle
        # The key verifier forgets the user's keys (server/auth.py): refused here at once.
        self.on_user_deleted = on_user_deleted

    async def _queue(self, conn: Connection, job: Job) -> None:
        payload = encode_job(job).decode()
        await insert(
            conn, OutboxMessage(self.settings.kafka_jobs_topic, job_key(job.product_id), payload)
        )

    async def _event(self, conn: Connection, event_type: str, row: Row, data: bytes) -> None:
        topic = self.settings.kafka_events_topic
        await insert(conn, events.product_event(event_type, row["id"], row["user_id"], data, topic))

    async def _locked(
        self, conn: Connection, product_id: int, owner: int | None, if_match: str | None
    ) -> Row:
        """The product's row, locked; 404 if it is not there or not the caller's (`owner`
        None: anyone's), 412 if If-Match names another version."""
        row = await products.lock_product(conn, product_id)
        if row is None or (owner is not None and row["user_id"] != owner):
            raise not_found(product_id)
        if match_fails(if_match, etag_of(render_product(row))):
            raise ApiError(412, "the product changed since (If-Match does not match)")
        return row

    async def change(
        self,
        product_id: int,
        patch: ProductPatch,
        *,
        owner: int | None,
        if_match: str | None,
        charge_images: ChargeImages,
    ) -> bytes:
        """Applies a patch; returns the product's new JSON."""
        async with bounded_acquire(self.pool, self.settings) as conn, conn.transaction():
            row = await self._locked(conn, product_id, owner, if_match)
            entries: list[image_state.Entry] = orjson.loads(row["images"])
            revision = row["images_revision"]
            if patch.images is not None:
                change = image_state.change_sources(entries, patch.images, revision + 1)
                entries = change.entries
                if change.to_process:
                    await charge_images(len(change.to_process))
                    revision += 1
                    await self._queue(conn, ImageJob(product_id, change.to_process, revision))
                if change.unreferenced:
                    keys = tuple(sorted(change.unreferenced))
                    await self._queue(conn, DeleteObjects(product_id, keys))
            row = await products.update_product(
                conn,
                product_id,
                name=patch.name,
                description=patch.description,
                price=patch.price,
                entries=entries,
                status=image_state.processing_status(entries),
                revision=revision,
            )
            body = render_product(row)
            await self._event(conn, events.UPDATED, row, body)
        await self._publish(product_id, row["version"], body)
        return body

    async def delete(self, product_id: int, *, owner: int | None, if_match: str | None) -> None:
        async with bounded_acquire(self.pool, self.settings) as conn, conn.transaction():
            row = await self._locked(conn, product_id, owner, if_match)
            await products.delete_product(conn, product_id)
            await self._clean_up(conn, product_id, row["images"])
            await self._deleted(conn, row)
        await self._publish(product_id, TOMBSTONE_VERSION, NOT_FOUND)

    async def delete_user(self, user_id: int) -> None:
        """The user, their products and their stored images, their keys and records."""
        async with bounded_acquire(self.pool, self.settings) as conn, conn.transaction():
            # Locked first: a product created for the user meanwhile would otherwise slip in
            # between the two deletes (and fail the user's with a foreign key violation).
            if not await users.lock_user(conn, user_id):
                raise ApiError(404, f"user {user_id} not found")
            deleted = await products.delete_users_products(conn, user_id)
            for row in deleted:
                await self._clean_up(conn, row["id"], row["images"])
                await self._deleted(conn, row)
            if not await users.delete_user(conn, user_id):
                raise ApiError(404, f"user {user_id} not found")
        self.on_user_deleted(user_id)
        for row in deleted:
            await self._publish(row["id"], TOMBSTONE_VERSION, NOT_FOUND)

    async def _publish(self, product_id: int, version: int, body: bytes) -> None:
        """The new representation into the cache, retried briefly: the database has it, and
        an old value left in Redis would be served; if Redis stays away, the write's cache
        debt stays, and the product is written again once Redis answers."""
        try:
            await retry(
                lambda: self.cache.put_fresh_or_raise(product_id, version, body),
                CACHE_RETRY,
                what="cache.write",
                retry_on=CACHE_ERRORS,
                log_extra={"product_id": product_id},
            )
        except RetriesExhausted as exhausted:
            log.error(
                "cache.write_failed",
                extra={"product_id": product_id, "error": repr(exhausted.last)},
            )
            return
        await self.settle(product_id, version)

    async def reprocess(self, product_id: int, *, owner: int | None) -> bytes:
        """Queues the product's images for processing again with the current image settings
        (catalogue/reprocessing.py: the previous outputs stay shown until the new ones are
        ready); returns the product's JSON as queued."""
        async with bounded_acquire(self.pool, self.settings) as conn:
            current = await products.get_product(conn, product_id)
            if current is None or (owner is not None and current["user_id"] != owner):
                raise not_found(product_id)
            done = await reprocess_product(conn, self.settings, self.cache, product_id)
        if done.skipped == MISSING:
            raise not_found(product_id)
        return render_product(done.row if done.row is not None else current)

    async def _deleted(self, conn: Connection, row: Row) -> None:
        data = events.deleted_data(row["id"], row["user_id"])
        await self._event(conn, events.DELETED, row, data)

    async def _clean_up(self, conn: Connection, product_id: int, images: str) -> None:
        keys = image_state.referenced_keys(orjson.loads(images))
        if keys:
            await self._queue(conn, DeleteObjects(product_id, tuple(sorted(keys))))
