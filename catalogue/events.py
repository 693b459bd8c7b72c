"""Product events: what changed in a product, for the integrations that subscribe to it.

Written to the outbox in the transaction of the change itself (so an event is never lost between
the database and Kafka, nor sent for a change that rolled back), relayed to the events topic keyed
by the product id (one product's events stay in order), and delivered to webhooks
(webhooks/). One message on the topic:

    {"v": 1, "id": "evt_…", "type": "product.updated", "timestamp": "2026-…Z",
     "user_id": "12", "product_id": "34", "data": {…the product's JSON…}}

The body an endpoint receives is `{"type", "timestamp", "data"}` (the Standard Webhooks payload
shape); the id travels in the `webhook-id` header, the same on every retry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from catalogue.ids import id_from_text
from catalogue.jobs import job_key
from db.outbox import OutboxMessage

EVENT_VERSION = 1
CREATED: Final = "product.created"
UPDATED: Final = "product.updated"
PROCESSED: Final = "product.processed"  # the processing status became terminal
DELETED: Final = "product.deleted"
EVENT_TYPES: Final = (CREATED, UPDATED, PROCESSED, DELETED)
EVENT_ID_PREFIX = "evt_"


class PoisonEvent(ValueError):
    """A message on the events topic that is not an event: skipped, never delivered."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    timestamp: str
    user_id: int
    product_id: int
    data: bytes  # JSON

    def webhook_body(self) -> str:
        """The exact JSON an endpoint receives (and the signature covers)."""
        return orjson.dumps(
            {"type": self.type, "timestamp": self.timestamp, "data": orjson.Fragment(self.data)}
        ).decode()


def new_event_id() -> str:
    return EVENT_ID_PREFIX + uuid.uuid4().hex


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def product_event(
    event_type: str, product_id: int, user_id: int, data: bytes, topic: str
) -> OutboxMessage:
    """The outbox message of one event; `data` is the product's JSON (render_product), or for a
    deletion the deleted product's ids."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    payload = orjson.dumps(
        {
            "v": EVENT_VERSION,
            "id": new_event_id(),
            "type": event_type,
            "timestamp": _now(),
            "user_id": str(user_id),
            "product_id": str(product_id),
            "data": orjson.Fragment(data),
        }
    )
    return OutboxMessage(topic, job_key(product_id), payload.decode())


def deleted_data(product_id: int, user_id: int) -> bytes:
    return orjson.dumps({"product_id": str(product_id), "user_id": str(user_id)})


def decode_event(payload: bytes | None) -> Event:
    try:
        message = orjson.loads(payload or b"")
    except orjson.JSONDecodeError as exc:
        raise PoisonEvent(f"payload is not JSON: {exc}") from None
    if not isinstance(message, dict) or message.get("v") != EVENT_VERSION:
        raise PoisonEvent("payload is not a version 1 event")
    event_id, event_type, timestamp = (
        message.get("id"),
        message.get("type"),
        message.get("timestamp"),
    )
    if not isinstance(event_id, str) or not event_id.startswith(EVENT_ID_PREFIX):
        raise PoisonEvent("id must be a string starting with evt_")
    if event_type not in EVENT_TYPES:
        raise PoisonEvent(f"type must be one of {', '.join(EVENT_TYPES)}")
    if not isinstance(timestamp, str):
        raise PoisonEvent("timestamp must be a string")
    ids = []
    for field in ("user_id", "product_id"):
        value = message.get(field)
        number = id_from_text(value) if isinstance(value, str) else None
        if number is None:
            raise PoisonEvent(f"{field} must be a string of digits from 1 to 2^63-1")
        ids.append(number)
    if not isinstance(message.get("data"), dict):
        raise PoisonEvent("data must be an object")
    return Event(event_id, event_type, timestamp, ids[0], ids[1], orjson.dumps(message["data"]))
