"""The image job: its wire format on Kafka, written by the API and read by the workers.

Version 1: `{"v": 1, "product_id": "123", "product_images": [url, …]}`, keyed by the product id
(`job_key`) so all jobs of a product land on one partition, in order. The API encodes it into the
outbox in the product's own statement; the relay copies the bytes to Kafka untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from catalogue.ids import id_from_text

JOB_VERSION = 1


class PoisonJob(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic at once."""


@dataclass(frozen=True, slots=True)
class ImageJob:
    product_id: int
    image_urls: tuple[str, ...]


def job_key(product_id: int) -> str:
    return str(product_id)


def encode_job(job: ImageJob) -> bytes:
    return orjson.dumps(
        {
            "v": JOB_VERSION,
            "product_id": str(job.product_id),
            "product_images": list(job.image_urls),
        }
    )


def decode_job(payload: bytes | None) -> ImageJob:
    try:
        data = orjson.loads(payload or b"")
    except orjson.JSONDecodeError as exc:
        raise PoisonJob(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != JOB_VERSION:
        raise PoisonJob("payload is not a version 1 image job")
    product_id, urls = data.get("product_id"), data.get("product_images")
    if not isinstance(product_id, str) or (number := id_from_text(product_id)) is None:
        raise PoisonJob("product_id must be a string of digits from 1 to 2^63-1")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise PoisonJob("product_images must be a list of strings")
    return ImageJob(number, tuple(urls))
