"""Products as tests set them up: the worker's final write, without running a worker."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from catalogue import image_state
from db import products


async def finish_processing(
    pool: asyncpg.Pool,
    product_id: int,
    *,
    urls: Sequence[str] = (),
    error: str = "http_status: HTTP 404",
) -> asyncpg.Record:
    """What the worker writes when a product's job ends: its pending sources, in order, get the
    outputs `urls` (at `products/<id>/<n>` keys) until they run out, and the rest fail with
    `error`."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await products.lock_images(conn, product_id)
        if locked is None:
            raise LookupError(f"product {product_id} does not exist")
        entries, revision = orjson.loads(locked["images"]), locked["images_revision"]
        pending = [e["source"] for e in entries if e["status"] == image_state.PENDING]
        outcomes = [
            image_state.Outcome(source, url=url, key=f"products/{product_id}/{n}")
            for n, (source, url) in enumerate(zip(pending, urls, strict=False))
        ] + [image_state.Outcome(source, error=error) for source in pending[len(urls) :]]
        change = image_state.apply_outcomes(entries, revision, outcomes)
        if change is None:
            raise LookupError(f"product {product_id} has no image pending")
        status = image_state.processing_status(change.entries)
        return await products.save_images(
            conn, product_id, change.entries, status=status, revision=revision
        )
