"""Creating a product: the row and its image job in one statement, its `product.created` event
in the same transaction (the transactional outbox: server/relay.py publishes both once they
commit), then the product's first cached value."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from catalogue import events, image_state
from catalogue.cache import ProductCache
from catalogue.jobs import ImageJob, encode_job, job_key
from catalogue.product_json import Row, render_product
from config import Settings
from db import outbox, products
from db.outbox import OutboxMessage
from db.pool import Connection, bounded_acquire
from server.errors import ApiError
from server.idempotency import Answer, Idempotent, once
from server.validation import NewProduct

FIRST_REVISION = 1
_CREATED = {"status": "success", "message": "Product created successfully"}


class ProductWrites:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, cache: ProductCache) -> None:
        self.pool = pool
        self.settings = settings
        self.cache = cache

    async def create(self, new: NewProduct, user_id: int, idempotent: Idempotent | None) -> Answer:
        """The answer to a create: 201 with the new product's id (or, for a retry with the same
        Idempotency-Key, the first answer again); 422 when its user does not exist."""
        async with bounded_acquire(self.pool, self.settings) as conn:
            if idempotent is None:
                async with conn.transaction():
                    answer, row, rendered = await self._insert(conn, new, user_id)
            else:
                created: list[tuple[Row, bytes]] = []

                async def create() -> Answer:
                    answer, row, rendered = await self._insert(conn, new, user_id)
                    created.append((row, rendered))
                    return answer

                async with conn.transaction():
                    answer = await once(conn, idempotent, "POST /products", create)
                if not created:
                    return answer  # a replay: its product exists, cached or not
                row, rendered = created[0]
        # Replaces a cached 404 for its id, but never the worker's result, which may be there
        # first.
        await self.cache.put_new(row["id"], row["version"], rendered)
        return answer

    async def _insert(
        self, conn: Connection, new: NewProduct, user_id: int
    ) -> tuple[Answer, Row, bytes]:
        """The product, its job and its event (the caller holds the transaction); the answer,
        the row and its JSON."""
        product_id = await products.reserve_product_id(conn)
        try:
            row = await products.create_product(
                conn,
                product_id=product_id,
                user_id=user_id,
                name=new.name,
                description=new.description,
                images=new.images,
                entries=orjson.dumps(image_state.new_entries(new.images, FIRST_REVISION)).decode(),
                price=new.price,
                job=image_job(product_id, new.images, self.settings.kafka_jobs_topic),
            )
        except products.UnknownUser:
            raise ApiError(422, f"user {user_id} does not exist", {"field": "user_id"}) from None
        rendered = render_product(row)
        topic = self.settings.kafka_events_topic
        await outbox.insert(
            conn, events.product_event(events.CREATED, product_id, user_id, rendered, topic)
        )
        body = {**_CREATED, "product_id": str(product_id)}
        return Answer(201, body, {"Location": f"/products/{product_id}"}), row, rendered


def image_job(product_id: int, images: Sequence[str], topic: str) -> OutboxMessage | None:
    """The outbox message of the product's image job; None when it has no images to process
    (the product is created done)."""
    if not images:
        return None
    payload = encode_job(ImageJob(product_id, tuple(images), FIRST_REVISION)).decode()
    return OutboxMessage(topic, job_key(product_id), payload)
