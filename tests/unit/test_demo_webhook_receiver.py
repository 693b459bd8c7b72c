"""The demo receiver's signature check agrees with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from scripts.demo.webhook_receiver import signature_holds

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = b'{"type":"product.created","timestamp":"2026-12-02T00:00:00Z","data":{"id":"1"}}'


def signed_headers(secret: str, msg_id: str, at: float, body: bytes) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at)), "webhook-signature": signature}


def test_a_delivery_signed_by_the_reference_library_verifies():
    now = time.time()
    assert signature_holds(SECRET, signed_headers(SECRET, "evt_1", now, BODY), BODY, now)


def test_one_good_signature_among_several_is_enough():
    now = time.time()
    headers = signed_headers(SECRET, "evt_1", now, BODY)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert signature_holds(SECRET, headers, BODY, now)


def test_a_changed_body_id_or_secret_does_not_verify():
    now = time.time()
    headers = signed_headers(SECRET, "evt_1", now, BODY)
    other = "whsec_" + base64.b64encode(b"j" * 32).decode()
    assert not signature_holds(SECRET, headers, BODY + b" ", now)
    assert not signature_holds(SECRET, {**headers, "webhook-id": "evt_2"}, BODY, now)
    assert not signature_holds(other, headers, BODY, now)


def test_a_timestamp_outside_five_minutes_is_a_replay():
    now = time.time()
    headers = signed_headers(SECRET, "evt_1", now - 301, BODY)
    assert not signature_holds(SECRET, headers, BODY, now)
    assert signature_holds(SECRET, headers, BODY, now - 2)


def test_missing_headers_or_a_malformed_secret_do_not_verify():
    now = time.time()
    headers = signed_headers(SECRET, "evt_1", now, BODY)
    for name in headers:
        assert not signature_holds(
            SECRET, {k: v for k, v in headers.items() if k != name}, BODY, now
        )
    assert not signature_holds("whsec_!!!", headers, BODY, now)
    assert not signature_holds(SECRET.removeprefix("whsec_"), headers, BODY, now)
