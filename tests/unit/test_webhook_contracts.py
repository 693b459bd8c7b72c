"""The webhook contracts as pure functions: secrets derived, deliveries signed so that the
Standard Webhooks reference library verifies them, events encoded and decoded, the retry
schedule's setting, and registration's URL and event rules."""

from __future__ import annotations

import base64
import re
import time

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from catalogue import events
from catalogue.webhooks import delivery_headers, new_salt, secret_key, secret_text, signature
from config.parsers import durations
from config.settings import SettingsError, load_settings
from server.errors import ApiError
from server.validation import WEBHOOK_URL_PATTERN, parse_new_webhook

SIGNING_KEY = "Qx9Lr7T2aEkVb4Np8Zt6Wc1Hs5Jd3Fg0Ym"
NOW = 1_700_000_000


def signed(key: bytes, body: str) -> dict[str, str]:
    return delivery_headers(key, "evt_1", int(time.time()), body)


def test_a_delivery_signed_here_verifies_with_the_reference_library():
    key = secret_key(SIGNING_KEY, 7, new_salt())
    event = events.Event("evt_1", events.CREATED, "2026-12-03T00:00:00Z", 1, 2, b'{"a":1}')
    body = event.webhook_body()

    verified = Webhook(secret_text(key)).verify(body, signed(key, body))

    assert verified == {"type": "product.created", "timestamp": event.timestamp, "data": {"a": 1}}


def test_another_secret_or_a_changed_body_does_not_verify():
    key, other = secret_key(SIGNING_KEY, 7, bytes(16)), secret_key(SIGNING_KEY, 8, bytes(16))
    headers = signed(key, "{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_text(other)).verify("{}", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_text(key)).verify('{"x":1}', headers)


def test_a_secret_is_derived_from_the_key_the_id_and_the_salt():
    salt = new_salt()
    key = secret_key(SIGNING_KEY, 7, salt)
    assert key == secret_key(SIGNING_KEY, 7, salt)  # the dispatcher derives the same again
    assert len(key) == 32
    assert key != secret_key(SIGNING_KEY, 8, salt)
    assert key != secret_key(SIGNING_KEY, 7, new_salt())
    assert key != secret_key(SIGNING_KEY + "x", 7, salt)
    text = secret_text(key)
    assert text.startswith("whsec_")
    assert base64.b64decode(text.removeprefix("whsec_")) == key


def test_signatures_cover_the_id_the_timestamp_and_the_body():
    key = secret_key(SIGNING_KEY, 7, bytes(16))
    base = signature(key, "evt_1", NOW, "{}")
    assert signature(key, "evt_2", NOW, "{}") != base
    assert signature(key, "evt_1", NOW + 1, "{}") != base
    assert signature(key, "evt_1", NOW, "{ }") != base
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", base)


# -- events -------------------------------------------------------------------------------------


def test_an_event_goes_through_the_outbox_and_back():
    data = orjson.dumps({"product_id": "34", "product_name": "Lamp"})
    message = events.product_event(events.UPDATED, 34, 12, data, "product-events")
    assert (message.topic, message.key) == ("product-events", "34")

    event = events.decode_event(message.payload.encode())

    assert (event.type, event.user_id, event.product_id) == (events.UPDATED, 12, 34)
    assert event.id.startswith("evt_")
    assert event.timestamp.endswith("Z")
    assert orjson.loads(event.webhook_body()) == {
        "type": "product.updated",
        "timestamp": event.timestamp,
        "data": {"product_id": "34", "product_name": "Lamp"},
    }


def test_each_event_has_its_own_id():
    first, second = (
        events.decode_event(events.product_event(events.CREATED, 1, 1, b"{}", "t").payload.encode())
        for _ in range(2)
    )
    assert first.id != second.id


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"v": 2}', "version 1"),
        (b'{"v": 1, "id": "x", "type": "product.created"}', "evt_"),
        (b'{"v": 1, "id": "evt_1", "type": "product.sold"}', "type"),
        (b'{"v": 1, "id": "evt_1", "type": "product.created", "timestamp": 1}', "timestamp"),
        (
            b'{"v": 1, "id": "evt_1", "type": "product.created", "timestamp": "t", '
            b'"user_id": "0", "product_id": "1", "data": {}}',
            "user_id",
        ),
        (
            b'{"v": 1, "id": "evt_1", "type": "product.created", "timestamp": "t", '
            b'"user_id": "1", "product_id": "1", "data": []}',
            "data",
        ),
    ],
)
def test_a_message_that_is_not_an_event_is_poison(payload, reason):
    with pytest.raises(events.PoisonEvent, match=reason):
        events.decode_event(payload)


def test_an_unknown_event_type_is_never_written():
    with pytest.raises(ValueError, match="unknown event type"):
        events.product_event("product.sold", 1, 1, b"{}", "t")


# -- settings and registration ------------------------------------------------------------------


def test_the_retry_schedule_reads_units():
    parse = durations(0.1, 7 * 86400)
    assert parse("5s, 5m,30m, 2h,1d, 0.5") == (5.0, 300.0, 1800.0, 7200.0, 86400.0, 0.5)
    for bad, reason in (("", "at least one"), ("5x", "not a duration"), ("8d", "between")):
        with pytest.raises(ValueError, match=reason):
            parse(bad)
    with pytest.raises(ValueError, match="between"):
        parse("nan")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in",
        "http://hooks.example.com:8080/in?token=abc",
        "https://93.184.215.14/hook",
        "https://[2001:4860::8888]/hook",
        "HTTPS://Example.COM",
    ],
)
def test_a_webhook_url_of_the_documented_shape_is_taken(url):
    assert re.fullmatch(WEBHOOK_URL_PATTERN, url)
    assert parse_new_webhook({"url": url}, events.EVENT_TYPES, user_id_required=False).url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "https://user@example.com/x",
        "https://example.com/x#top",
        "https://example.com:0/x",
        "https://example.com:65536/x",
        "https://2130706433/x",
        "https://example.com/a b",
        "https:///x",
    ],
)
def test_a_webhook_url_of_another_shape_is_a_400_naming_url(url):
    assert not re.fullmatch(WEBHOOK_URL_PATTERN, url)
    with pytest.raises(ApiError) as refused:
        parse_new_webhook({"url": url}, events.EVENT_TYPES, user_id_required=False)
    assert (refused.value.status, refused.value.details) == (400, {"field": "url"})


def test_events_default_to_every_type_and_are_checked_when_given():
    parse = parse_new_webhook
    url = "https://example.com/x"
    assert parse({"url": url}, events.EVENT_TYPES, user_id_required=False).events == (
        events.EVENT_TYPES
    )
    chosen = parse(
        {"url": url, "events": ["product.deleted"]}, events.EVENT_TYPES, user_id_required=False
    )
    assert chosen.events == ("product.deleted",)
    with pytest.raises(ApiError, match="user_id is required"):
        parse({"url": url}, events.EVENT_TYPES, user_id_required=True)


def test_a_weak_signing_key_is_refused_without_echoing_it():
    for weak in ("short-but-secret", "ab" * 20):
        with pytest.raises(SettingsError) as refused:
            load_settings({"WEBHOOK_SIGNING_KEY": weak}, dotenv=None)
        assert str(refused.value).startswith("WEBHOOK_SIGNING_KEY: ")
        assert weak not in str(refused.value)
    assert not load_settings({}, dotenv=None).webhooks_enabled
    assert load_settings({"WEBHOOK_SIGNING_KEY": SIGNING_KEY}, dotenv=None).webhooks_enabled
