"""The image job: its wire format on Kafka, and the creation of the topics it travels on.

The API writes jobs through its outbox (the payload is built in SQL, see db/products.py); the
workers read them here. Version 1: `{"v": 1, "product_id": "123", "product_images": [url, …]}`,
keyed by the product id so all jobs of a product land on one partition, in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from db.ids import id_from_text

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


class PoisonJob(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic at once."""


@dataclass(frozen=True, slots=True)
class ImageJob:
    product_id: int
    image_urls: tuple[str, ...]


def encode_job(job: ImageJob) -> bytes:
    return orjson.dumps(
        {"v": 1, "product_id": str(job.product_id), "product_images": list(job.image_urls)}
    )


def decode_job(payload: bytes | None) -> ImageJob:
    try:
        data = orjson.loads(payload or b"")
    except orjson.JSONDecodeError as exc:
        raise PoisonJob(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise PoisonJob("payload is not a version 1 image job")
    product_id, urls = data.get("product_id"), data.get("product_images")
    if not isinstance(product_id, str) or (number := id_from_text(product_id)) is None:
        raise PoisonJob("product_id must be a string of digits from 1 to 2^63-1")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise PoisonJob("product_images must be a list of strings")
    return ImageJob(number, tuple(urls))


async def ensure_topics(
    bootstrap_servers: str, topics: list[str], *, partitions: int, replication_factor: int
) -> list[str]:
    """Creates the topics that do not exist yet; returns those it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(t, partitions, replication_factor) for t in missing]
        )
        for topic, code, *_ in response.topic_errors:
            # Another process may have created it between our list and create: that is fine.
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"creating topic {topic} failed with error code {code}")
        log.info("kafka.topics_created", extra={"topics": missing, "partitions": partitions})
        return missing
    finally:
        await admin.close()
