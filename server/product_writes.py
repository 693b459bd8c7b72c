"""Creating a product: the row and its image job in one statement (the transactional outbox:
server/relay.py publishes the job once it commits), then the product's first cached value."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from catalogue.cache import ProductCache
from catalogue.jobs import ImageJob, encode_job, job_key
from catalogue.product_json import render_product
from config import Settings
from db import products
from db.outbox import OutboxMessage
from db.pool import bounded_acquire
from server.validation import NewProduct


class ProductWrites:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, cache: ProductCache) -> None:
        self.pool = pool
        self.settings = settings
        self.cache = cache

    async def create(self, new: NewProduct) -> int:
        """The new product's id; db.products.UnknownUser when its user does not exist."""
        async with bounded_acquire(self.pool, self.settings) as conn:
            product_id = await products.reserve_product_id(conn)
            row = await products.create_product(
                conn,
                product_id=product_id,
                user_id=new.user_id,
                name=new.name,
                description=new.description,
                images=new.images,
                price=new.price,
                job=image_job(product_id, new.images, self.settings.kafka_jobs_topic),
            )
        # Replaces a cached 404 for its id, but never the worker's result, which may be there
        # first.
        await self.cache.put_new(product_id, render_product(row))
        return product_id


def image_job(product_id: int, images: Sequence[str], topic: str) -> OutboxMessage | None:
    """The outbox message of the product's image job; None when it has no images to process
    (the product is created done)."""
    if not images:
        return None
    payload = encode_job(ImageJob(product_id, tuple(images))).decode()
    return OutboxMessage(topic, job_key(product_id), payload)
