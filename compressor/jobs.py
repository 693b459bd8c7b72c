"""The image job: its wire format on Kafka, and the creation of the topics it travels on.

The API writes jobs through its outbox (the payload is built in SQL, see db/products.py); the
workers read them here. Version 1: `{"v": 1, "product_id": "123", "product_images": [url, …]}`,
keyed by the product id so all jobs of a product land on one partition, in order.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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


_PRODUCT_ID = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1


def decode_job(payload: bytes | None) -> ImageJob:
    try:
        data = orjson.loads(payload or b"")
    except orjson.JSONDecodeError as exc:
        raise PoisonJob(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise PoisonJob("payload is not a version 1 image job")
    product_id, urls = data.get("product_id"), data.get("product_images")
    # ASCII digits within BIGINT: str.isdigit() also takes "²", which int() then refuses.
    if (
        not isinstance(product_id, str)
        or not _PRODUCT_ID.fullmatch(product_id)
        or not 1 <= int(product_id) <= _MAX_ID
    ):
        raise PoisonJob("product_id must be a string of digits from 1 to 2^63-1")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise PoisonJob("product_images must be a list of strings")
    return ImageJob(int(product_id), tuple(urls))


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
