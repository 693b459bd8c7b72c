"""Webhook contracts both the API (registration) and the dispatcher (delivery) follow: how an
endpoint's secret is derived, how a delivery is signed (Standard Webhooks), and which addresses
an endpoint may have.

No secret is stored. Each endpoint's secret is HMAC-SHA256(WEBHOOK_SIGNING_KEY, "webhook:" id
":" salt), its 16-byte salt random and kept in the row: the API shows it once at registration,
the dispatcher derives it again for each delivery, and a copy of the database alone signs
nothing. Rotating WEBHOOK_SIGNING_KEY rotates every endpoint's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from catalogue.ssrf import AddressPolicy
from config import Settings

SECRET_PREFIX = "whsec_"  # the Standard Webhooks secret format: whsec_ + base64 of the key
SALT_BYTES = 16
SIGNATURE_VERSION = "v1"  # HMAC-SHA256, the only symmetric scheme of the specification
USER_AGENT = "product-catalogue-webhooks/1.0"


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def secret_key(signing_key: str, webhook_id: int, salt: bytes) -> bytes:
    """The endpoint's raw HMAC key (32 bytes)."""
    message = b"webhook:%d:%s" % (webhook_id, salt.hex().encode())
    return hmac.new(signing_key.encode(), message, hashlib.sha256).digest()


def secret_text(key: bytes) -> str:
    """The secret as the endpoint's owner receives it, and as Standard Webhooks libraries read it."""
    return SECRET_PREFIX + base64.b64encode(key).decode()


def signature(key: bytes, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def delivery_headers(key: bytes, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
    }


def url_policy(settings: Settings) -> AddressPolicy:
    """The SSRF rules of webhook URLs: the image sources' rules, opened only by the webhook
    switches (no exact origins: an endpoint is a user's, not the operator's)."""
    return AddressPolicy(
        allow_loopback=settings.webhook_allow_loopback_urls,
        allow_private=settings.webhook_allow_private_urls,
    )
