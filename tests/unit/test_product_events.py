"""The event hub (server/product_events.py), the stream's rules (server/product_stream.py) over
an in-memory table instead of PostgreSQL, Last-Event-ID's parsing and the OpenAPI entry of
GET /products/{id}/events. The real thing, on the real stack: tests/integration/
test_product_events.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from config import Settings, load_settings
from server import product_stream
from server.errors import ApiError
from server.openapi import openapi_document
from server.product_events import ProductEvents
from server.product_stream import KEEPALIVE_S, ProductStream
from server.validation import EVENT_ID_PATTERN, parse_last_event_id
from tests.conftest import UNREACHABLE

PRODUCT_ID = 7

# -- the hub -------------------------------------------------------------------------------------


def test_a_notification_no_one_watches_leaves_nothing_behind() -> None:
    hub = ProductEvents(max_streams=10)
    hub.notify(PRODUCT_ID)
    hub.notify_all()
    assert (hub.streams, hub.watched()) == (0, 0)


def test_a_watcher_hears_of_its_product_only() -> None:
    hub = ProductEvents(max_streams=10)
    with hub.watch(PRODUCT_ID) as mine, hub.watch(PRODUCT_ID + 1) as other:
        hub.notify(PRODUCT_ID)
        assert mine.is_set()
        assert not other.is_set()


def test_every_watcher_of_a_product_hears_of_it() -> None:
    hub = ProductEvents(max_streams=10)
    with hub.watch(PRODUCT_ID) as first, hub.watch(PRODUCT_ID) as second:
        assert (hub.streams, hub.watched()) == (2, 1)
        hub.notify(PRODUCT_ID)
        assert first.is_set()
        assert second.is_set()


def test_notify_all_wakes_every_watcher() -> None:
    hub = ProductEvents(max_streams=10)
    with hub.watch(1) as one, hub.watch(2) as two:
        hub.notify_all()
        assert one.is_set()
        assert two.is_set()
        assert not hub.closing


def test_leaving_the_block_forgets_the_watcher_even_on_an_error() -> None:
    hub = ProductEvents(max_streams=10)
    with hub.watch(PRODUCT_ID), pytest.raises(ConnectionError), hub.watch(PRODUCT_ID):
        raise ConnectionError
    assert (hub.streams, hub.watched()) == (0, 0)
    with hub.watch(PRODUCT_ID) as again:  # a product watched again after all left
        hub.notify(PRODUCT_ID)
        assert again.is_set()
    assert (hub.streams, hub.watched()) == (0, 0)


def test_the_hub_is_full_at_max_streams() -> None:
    hub = ProductEvents(max_streams=2)
    with hub.watch(1):
        assert not hub.full
        with hub.watch(2):
            assert hub.full
    assert not hub.full


def test_closing_wakes_every_watcher_and_says_so() -> None:
    hub = ProductEvents(max_streams=10)
    with hub.watch(PRODUCT_ID) as changed:
        hub.close()
        assert hub.closing
        assert changed.is_set()


# -- Last-Event-ID -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "version"), [(None, None), ("", None), ("0", 0), ("42", 42)])
def test_last_event_id_is_a_version_or_none(text: str | None, version: int | None) -> None:
    assert parse_last_event_id(text) == version
    assert parse_last_event_id("9" * 19) == int("9" * 19)


@pytest.mark.parametrize("text", ["abc", "-1", "+1", "1.5", " 1", "1 ", "1" * 20, "²", "١"])
def test_a_malformed_last_event_id_is_400_naming_the_header(text: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_last_event_id(text)
    assert refused.value.status == 400
    assert refused.value.details == {"field": "Last-Event-ID"}


# -- the stream's rules, over an in-memory table -------------------------------------------------


class Table:
    """One product's row as the stream loads it: (version, JSON), or None once deleted."""

    def __init__(self) -> None:
        self.row: tuple[int, bytes] | None = (1, b'{"v":1}')
        self.loads = 0

    async def load(self) -> tuple[int, bytes] | None:
        self.loads += 1
        return self.row

    def change(self, hub: ProductEvents, version: int) -> None:
        self.row = (version, b'{"v":%d}' % version)
        hub.notify(PRODUCT_ID)


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient, ProductEvents, Table]]:
    hub, table = ProductEvents(max_streams=10), Table()

    async def handler(request: web.Request) -> web.StreamResponse:
        held = request.headers.get("Last-Event-ID")
        return ProductStream(
            hub,
            PRODUCT_ID,
            table.load,
            last_event_id=int(held) if held else None,
            request_id="test",
        )

    app = web.Application()
    app.router.add_get("/events", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, hub, table
    await client.close()


async def lines_until(response: ClientResponse, wanted: bytes) -> list[bytes]:
    """The stream's lines up to and including the first that starts with `wanted`."""
    seen: list[bytes] = []
    async with asyncio.timeout(5):
        while not seen or not seen[-1].startswith(wanted):
            line = await response.content.readline()
            assert line, f"the stream ended before {wanted!r}: {seen}"
            seen.append(line.rstrip(b"\n"))
    return seen


async def test_the_stream_sends_retry_then_the_product_then_newer_versions_only(served) -> None:
    client, hub, table = served
    async with client.get("/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await lines_until(response, b"data:") == [
            b"retry: 2000",
            b"",
            b"event: product",
            b"id: 1",
            b'data: {"v":1}',
        ]
        hub.notify(PRODUCT_ID)  # nothing newer: no event
        table.change(hub, 3)
        assert (await lines_until(response, b"data:"))[-2:] == [b"id: 3", b'data: {"v":3}']


async def test_a_client_holding_the_current_version_is_not_sent_it_again(
    served, monkeypatch
) -> None:
    monkeypatch.setattr(product_stream, "KEEPALIVE_S", 0.05)
    client, hub, table = served
    async with client.get("/events", headers={"Last-Event-ID": "1"}) as response:
        assert await lines_until(response, b":") == [b"retry: 2000", b"", b":"]
        table.change(hub, 2)
        assert (await lines_until(response, b"data:"))[-2:] == [b"id: 2", b'data: {"v":2}']


async def test_an_idle_stream_sends_keep_alive_comments_without_loading(
    served, monkeypatch
) -> None:
    monkeypatch.setattr(product_stream, "KEEPALIVE_S", 0.05)
    client, _, table = served
    async with client.get("/events") as response:
        await lines_until(response, b"data:")
        for _ in range(3):
            assert await lines_until(response, b":") == [b"", b":"]
        assert table.loads == 1  # a keep-alive is no reason to look again


async def test_a_deleted_product_ends_the_stream_with_deleted(served) -> None:
    client, hub, table = served
    async with client.get("/events") as response:
        await lines_until(response, b"data:")
        table.row = None
        hub.notify(PRODUCT_ID)
        assert (await lines_until(response, b"data:"))[-2:] == [
            b"event: deleted",
            b'data: {"product_id":"7"}',
        ]
        async with asyncio.timeout(5):
            assert await response.content.read() == b"\n"  # the blank line, then the end
    assert (hub.streams, hub.watched()) == (0, 0)


async def test_closing_the_hub_ends_the_stream(served) -> None:
    client, hub, _ = served
    async with client.get("/events") as response:
        await lines_until(response, b"data:")
        hub.close()
        async with asyncio.timeout(5):
            assert await response.content.read() == b"\n"  # the event's blank line, then the end
    assert (hub.streams, hub.watched()) == (0, 0)


def test_the_keep_alive_is_15_seconds() -> None:
    assert KEEPALIVE_S == 15.0


# -- the OpenAPI entry ---------------------------------------------------------------------------


def settings(**env: str) -> Settings:
    return load_settings({**UNREACHABLE, **env}, None)


@pytest.mark.parametrize("auth_mode", ["api_key", "off"])
def test_the_events_operation_is_documented_as_get_product_is(auth_mode: str) -> None:
    document = openapi_document(settings(AUTH_MODE=auth_mode, SSE_MAX_STREAMS="77"))
    events = document["paths"]["/products/{product_id}/events"]["get"]
    get = document["paths"]["/products/{product_id}"]["get"]
    # The same path parameter, the same key requirement, the same refusals.
    assert events["parameters"][0] == get["parameters"][0]
    assert events.get("security") == get.get("security")
    refusals = {"400", "401", "404", "429", "503"} if auth_mode == "api_key" else {"400", "404"}
    assert refusals - {"503"} <= set(get["responses"])
    assert refusals | {"200", "503"} == set(events["responses"])
    ok = events["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]
    assert {"Cache-Control", "X-Accel-Buffering", "X-Request-ID"} <= set(ok["headers"])
    assert "77" in events["responses"]["503"]["description"]
    last_event_id = events["parameters"][1]
    assert (last_event_id["name"], last_event_id["in"]) == ("Last-Event-ID", "header")
    assert last_event_id["schema"]["pattern"] == f"^$|{EVENT_ID_PATTERN}"


def test_get_product_keeps_its_own_503() -> None:
    """The events operation's 503 is its own; every other operation keeps the common one."""
    get = openapi_document(settings())["paths"]["/products/{product_id}"]["get"]
    assert get["responses"]["503"]["description"] == "PostgreSQL unavailable: retry shortly"
