"""The messages of the jobs topic, written by the API (through its outbox) and read by workers.

Keyed by the product id (`job_key`), so all of a product's messages land on one partition, in
order. Version 2 (version 1, without a revision, is still read: its revision is 1):
- an image job, `{"v": 2, "kind": "images", "product_id": "123", "revision": 4,
  "product_images": [url, …]}`: process these sources; the results land only on entries still
  pending at that revision (catalogue/image_state.py);
- a clean-up, `{"v": 2, "kind": "delete_objects", "product_id": "123", "keys": [key, …]}`:
  delete stored objects nothing references any more (a product deleted, images removed or
  replaced). It travels through the outbox, written in the same transaction as the change, so a
  crash between the change and the clean-up loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from catalogue.ids import id_from_text

JOB_VERSION = 2
IMAGES, DELETE_OBJECTS = "images", "delete_objects"


class PoisonJob(ValueError):
    """A message that can never be processed: it goes to the dead-letter topic at once."""


@dataclass(frozen=True, slots=True)
class ImageJob:
    product_id: int
    image_urls: tuple[str, ...]
    revision: int = 1


@dataclass(frozen=True, slots=True)
class DeleteObjects:
    product_id: int
    keys: tuple[str, ...]


Job = ImageJob | DeleteObjects


def job_key(product_id: int) -> str:
    return str(product_id)


def encode_job(job: Job) -> bytes:
    if isinstance(job, DeleteObjects):
        return orjson.dumps(
            {
                "v": JOB_VERSION,
                "kind": DELETE_OBJECTS,
                "product_id": str(job.product_id),
                "keys": list(job.keys),
            }
        )
    return orjson.dumps(
        {
            "v": JOB_VERSION,
            "kind": IMAGES,
            "product_id": str(job.product_id),
            "revision": job.revision,
            "product_images": list(job.image_urls),
        }
    )


def _strings(data: dict[str, object], field: str) -> tuple[str, ...]:
    values = data.get(field)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PoisonJob(f"{field} must be a list of strings")
    return tuple(values)


def decode_job(payload: bytes | None) -> Job:
    try:
        data = orjson.loads(payload or b"")
    except orjson.JSONDecodeError as exc:
        raise PoisonJob(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") not in (1, JOB_VERSION):
        raise PoisonJob("payload is not a version 1 or 2 job")
    product_id = data.get("product_id")
    if not isinstance(product_id, str) or (number := id_from_text(product_id)) is None:
        raise PoisonJob("product_id must be a string of digits from 1 to 2^63-1")
    kind = data.get("kind", IMAGES)
    if kind == DELETE_OBJECTS:
        return DeleteObjects(number, _strings(data, "keys"))
    if kind != IMAGES:
        raise PoisonJob(f"kind must be {IMAGES} or {DELETE_OBJECTS}")
    revision = data.get("revision", 1)
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise PoisonJob("revision must be a positive integer")
    return ImageJob(number, _strings(data, "product_images"), revision)
