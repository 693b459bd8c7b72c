"""What a job leaves behind: the product's final row in PostgreSQL, then its fresh cached copy.

The pipeline records the outcome of a job it ran; the dead letters mark a job that could not
finish failed. Both write the same way, through ProductResults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from catalogue.product_json import render_product
from catalogue.retry import RetriesExhausted, RetryPolicy, retry
from compressor.errors import ImageFailure
from db import products

log = logging.getLogger("compressor")


@dataclass(frozen=True, slots=True)
class ImageResult:
    source: str
    url: str | None = None
    failure: ImageFailure | None = None


def outcome(results: list[ImageResult]) -> str:
    failed = sum(1 for r in results if r.failure is not None)
    if failed == 0:
        return "done"
    return "failed" if failed == len(results) else "partial"


class FreshCache(Protocol):
    """The part of catalogue.cache.ProductCache the worker writes through."""

    async def put_fresh_or_raise(self, product_id: int, body: bytes) -> None: ...


class ProductResults:
    def __init__(
        self, db: asyncpg.Pool, cache: FreshCache, *, retry_policy: RetryPolicy, cache_ttl_s: int
    ) -> None:
        self.db = db
        self.cache = cache
        self.retry_policy = retry_policy
        self.cache_ttl_s = cache_ttl_s

    async def status(self, product_id: int) -> str | None:
        """The product's processing status; None if there is no such product."""
        return await products.processing_status(self.db, product_id)

    async def record(self, product_id: int, results: list[ImageResult], status: str) -> None:
        """Writes the job's outcome: one UPDATE, then the fresh value into the cache."""
        row = await products.finish_processing(
            self.db,
            product_id,
            compressed_images=[r.url for r in results if r.url is not None],
            status=status,
            errors=[
                {"image": r.source, "error": str(r.failure)}
                for r in results
                if r.failure is not None
            ],
        )
        if row is None:
            log.warning("job.product_missing", extra={"product_id": product_id})
            return
        await self._refresh_cache(product_id, render_product(row))

    async def mark_failed(self, product_id: int, sources: tuple[str, ...], reason: str) -> None:
        """Marks a dead-lettered product failed, naming the reason for each image."""
        failure = ImageFailure("dead_lettered", transient=False, detail=reason)
        await self.record(product_id, [ImageResult(s, failure=failure) for s in sources], "failed")

    async def _refresh_cache(self, product_id: int, body: bytes) -> None:
        """Stores the processed product in Redis and tells every API process (plain SET: this is
        the freshest value, and readers only ever SET NX).

        Retried with the jobs' backoff: a Redis blip must not leave the pre-processing value
        cached for its whole TTL. If Redis stays unreachable, the database holds the result and
        the job is done all the same; what is left is a cached copy that may be stale until it
        expires, and that is logged."""
        try:
            await retry(
                lambda: self.cache.put_fresh_or_raise(product_id, body),
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
                    "stale_for_at_most_s": self.cache_ttl_s,
                },
            )
