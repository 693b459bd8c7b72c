"""GET /products/{id}/events on the real stack: the product's JSON each time it changes, from
whichever process or worker changed it, until it is deleted or the client leaves; the access
rules of GET /products/{id}; Last-Event-ID; the bound on open streams; the end of every stream at
shutdown.

The streams are read as a browser's EventSource would (`EventReader`), each wait bounded by a
deadline; "the stream saw nothing" is never waited for by sleeping: a test that needs to know no
event came first waits for a keep-alive comment (sent only when nothing else was)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import settings_to_env
from server import product_stream
from server.app import create_app
from server.change_feed import APPLICATION_NAME
from server.keys import PRODUCT_EVENTS
from server.product_stream import RETRY_MS
from testkit.products import finish_processing
from testkit.serving import stop, wait_until_answering

from .conftest import ROOT, wait_for
from .test_api_access import ADMIN, _comparable, access_api, create_product, new_user
from .test_api_access_processes import free_port
from .test_api_misc import check_against_spec, spec  # noqa: F401 (spec: the document)

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 10.0
SHORT_KEEPALIVE_S = 0.05


@dataclass
class Event:
    event: str
    id: str | None
    data: bytes


class EventReader:
    """An event stream parsed as the WHATWG rules say (the API writes LF line ends only)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0
        self.retry: int | None = None
        self.last_event_id: str | None = None

    async def _line(self) -> bytes:
        line = await self.response.content.readline()
        if not line:
            raise EOFError("the stream ended")
        assert line.endswith(b"\n"), line
        return line[:-1]

    async def next(self, *, timeout_s: float = EVENT_TIMEOUT_S) -> Event:
        """The next event (comments and retry fields counted on the way)."""
        async with asyncio.timeout(timeout_s):
            name, event_id = b"", None
            data: list[bytes] = []
            while True:
                line = await self._line()
                if not line:
                    if data:
                        if event_id is not None:
                            self.last_event_id = event_id
                        return Event(name.decode() or "message", event_id, b"\n".join(data))
                    name, event_id = b"", None
                    continue
                if line.startswith(b":"):
                    self.comments += 1
                    continue
                field, _, value = line.partition(b":")
                value = value.removeprefix(b" ")
                if field == b"data":
                    data.append(value)
                elif field == b"event":
                    name = value
                elif field == b"id":
                    event_id = value.decode()
                elif field == b"retry":
                    self.retry = int(value)

    async def comment(self, *, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        """Until the next keep-alive comment; fails if an event comes first."""
        async with asyncio.timeout(timeout_s):
            seen = self.comments
            while self.comments == seen:
                line = await self._line()
                if line.startswith(b":"):
                    self.comments += 1
                else:
                    assert not line or line.startswith(b"retry:"), f"not a comment: {line!r}"

    async def end(self, *, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        """Until the stream ends; fails if an event comes first."""
        async with asyncio.timeout(timeout_s):
            while line := await self.response.content.readline():
                assert line in (b"\n",) or line.startswith(b":"), f"not the end: {line!r}"


@contextlib.asynccontextmanager
async def streaming(
    http: Any, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[aiohttp.ClientResponse, EventReader]]:
    """GET `url` as a stream; asserts it is one. `http` is a TestClient or a ClientSession."""
    async with http.get(url, headers=headers or {}) as response:
        assert response.status == 200, await response.text()
        yield response, EventReader(response)


async def new_product(api: TestClient, user: dict[str, str], **fields: Any) -> int:
    body = {"user_id": user["user_id"], "product_name": "Lamp", "product_price": 10, **fields}
    response = await api.post("/products", json=body)
    assert response.status == 201, await response.text()
    return int((await response.json())["product_id"])


async def current(api: TestClient, product_id: int) -> bytes:
    """What GET /products/{id} answers now."""
    response = await api.get(f"/products/{product_id}")
    assert response.status == 200
    return await response.read()


async def version_of(db: Any, product_id: int) -> int:
    version: int = await db.fetchval("SELECT version FROM products WHERE id = $1", product_id)
    return version


@pytest.fixture
async def second_api(settings) -> AsyncIterator[TestClient]:
    """Another API process's worth of app: its own feeds and hub, the same Redis and database."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
def short_keepalive(monkeypatch) -> None:
    monkeypatch.setattr(product_stream, "KEEPALIVE_S", SHORT_KEEPALIVE_S)


def hub_of(api: TestClient) -> Any:
    return api.server.app[PRODUCT_EVENTS]


# -- what a subscriber receives ------------------------------------------------------------------


async def test_a_subscriber_gets_the_product_then_each_change(api, user, db):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (response, events):
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert response.headers["X-Request-ID"]
        first = await events.next()
        assert events.retry == RETRY_MS
        assert first.event == "product"
        assert first.id == str(await version_of(db, product_id))
        assert first.data == await current(api, product_id)  # the very bytes GET answers
        patched = await api.patch(f"/products/{product_id}", json={"product_name": "Desk lamp"})
        assert patched.status == 200
        second = await events.next()
        assert second.event == "product"
        assert int(second.id) > int(first.id)
        assert orjson.loads(second.data)["product_name"] == "Desk lamp"
        assert second.data == await current(api, product_id)


async def test_a_change_through_another_api_process_arrives(api, second_api, user):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        await events.next()
        patched = await second_api.patch(f"/products/{product_id}", json={"product_price": 12.5})
        assert patched.status == 200
        changed = await events.next()
        assert orjson.loads(changed.data)["product_price"] == 12.5


async def test_the_workers_write_to_postgresql_arrives(api, user, db):
    product_id = await new_product(api, user, product_images=["https://images.example.com/a.jpg"])
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        assert orjson.loads((await events.next()).data)["processing_status"] == "pending"
        await finish_processing(db, product_id, urls=["http://127.0.0.1:1/images/a.jpg"])
        processed = orjson.loads((await events.next()).data)
        assert processed["processing_status"] == "done"
        assert processed["compressed_product_images"] == ["http://127.0.0.1:1/images/a.jpg"]


async def test_a_change_made_while_the_change_feed_was_lost_arrives_once_it_listens_again(
    api, user, db
):
    """Written straight to PostgreSQL (no Redis word of it) just after the feed's connection was
    ended: the feed hears it live if it is already back, else its resubscription wakes every
    stream (notify_all). Either way the stream must not miss it."""
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        await events.next()
        ended = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        assert ended >= 1
        await db.execute(
            "UPDATE products SET product_name = 'renamed', version = version + 1 WHERE id = $1",
            product_id,
        )
        assert orjson.loads((await events.next()).data)["product_name"] == "renamed"


async def test_a_notification_without_a_newer_version_sends_nothing(api, user, db, short_keepalive):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        await events.next()
        hub_of(api).notify(product_id)  # as a feed repeats itself: the row is unchanged
        await events.comment()  # a keep-alive, no event: nothing newer to send
        await db.execute(
            "UPDATE products SET product_name = 'next', version = version + 1 WHERE id = $1",
            product_id,
        )
        assert orjson.loads((await events.next()).data)["product_name"] == "next"


async def test_deleting_the_product_sends_deleted_and_ends_the_stream(api, user):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        await events.next()
        assert (await api.delete(f"/products/{product_id}")).status == 204
        deleted = await events.next()
        assert deleted.event == "deleted"
        assert orjson.loads(deleted.data) == {"product_id": str(product_id)}
        await events.end()
    assert (await api.get(f"/products/{product_id}/events")).status == 404


async def test_a_row_deleted_in_postgresql_ends_the_stream_too(api, user, db):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        await events.next()
        await db.execute("DELETE FROM products WHERE id = $1", product_id)
        assert (await events.next()).event == "deleted"
        await events.end()


async def test_idle_streams_get_keep_alive_comments(api, user, short_keepalive):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events") as (_, events):
        await events.next()
        for _ in range(3):
            await events.comment(timeout_s=5)


# -- Last-Event-ID -------------------------------------------------------------------------------


async def test_a_client_holding_the_current_version_gets_only_what_comes_after(
    api, user, db, short_keepalive
):
    product_id = await new_product(api, user)
    version = await version_of(db, product_id)
    headers = {"Last-Event-ID": str(version)}
    async with streaming(api, f"/products/{product_id}/events", headers) as (_, events):
        await events.comment()  # nothing sent on connect: the client has it
        await api.patch(f"/products/{product_id}", json={"product_name": "after"})
        changed = await events.next()
        assert int(changed.id) > version
        assert orjson.loads(changed.data)["product_name"] == "after"


async def test_a_client_holding_an_older_version_gets_the_current_one_at_once(api, user, db):
    product_id = await new_product(api, user)
    old = await version_of(db, product_id)
    await api.patch(f"/products/{product_id}", json={"product_name": "newer"})
    for held in (str(old), "0", str(10**18)):  # older, none such, and one never written
        headers = {"Last-Event-ID": held}
        async with streaming(api, f"/products/{product_id}/events", headers) as (_, events):
            first = await events.next()
            assert first.id == str(await version_of(db, product_id))
            assert orjson.loads(first.data)["product_name"] == "newer"


async def test_an_empty_last_event_id_is_none(api, user):
    product_id = await new_product(api, user)
    async with streaming(api, f"/products/{product_id}/events", {"Last-Event-ID": ""}) as (
        _,
        events,
    ):
        assert (await events.next()).event == "product"


@pytest.mark.parametrize("held", ["abc", "-1", "1.5", "1" * 20, "12 34", "²"])
async def test_a_malformed_last_event_id_is_400_naming_it(api, user, held):
    product_id = await new_product(api, user)
    response = await api.get(f"/products/{product_id}/events", headers={"Last-Event-ID": held})
    assert response.status == 400
    body = await response.json()
    assert body["status"] == "error"
    assert body["details"] == {"field": "Last-Event-ID"}


# -- bad ids and access: exactly GET /products/{id}'s answers --------------------------------------


@pytest.mark.parametrize("product_id", ["abc", "0", "-5", "1.0", "9" * 20, "9223372036854775808"])
async def test_a_malformed_id_is_answered_as_get_answers_it(api, product_id):
    got = await api.get(f"/products/{product_id}")
    streamed = await api.get(f"/products/{product_id}/events")
    assert streamed.status == got.status == 400
    assert await streamed.json() == await got.json()


async def test_a_missing_product_is_404_as_get_answers_it(api, user):
    missing = await new_product(api, user) + 1_000_000
    got = await api.get(f"/products/{missing}")
    streamed = await api.get(f"/products/{missing}/events")
    assert streamed.status == got.status == 404
    assert await streamed.json() == await got.json()


async def test_with_keys_no_key_is_401_as_for_get(settings):
    async with access_api(settings) as api:
        _, headers = await new_user(api)
        product_id = (await create_product(api, headers))["product_id"]
        got = await api.get(f"/products/{product_id}")
        streamed = await api.get(f"/products/{product_id}/events")
        assert streamed.status == got.status == 401
        assert streamed.headers["WWW-Authenticate"] == got.headers["WWW-Authenticate"]
        bad = {"Authorization": "Bearer catk_0000000000000000_" + "x" * 43}
        assert (await api.get(f"/products/{product_id}/events", headers=bad)).status == 401


async def test_with_keys_another_users_product_is_404_exactly_like_a_missing_one(settings):
    async with access_api(settings) as api:
        _, headers = await new_user(api)
        _, their_headers = await new_user(api)
        theirs = (await create_product(api, their_headers))["product_id"]
        missing = str(int(theirs) + 1_000_000)
        seen = []
        for product_id in (theirs, missing):
            response = await api.get(f"/products/{product_id}/events", headers=headers)
            seen.append(_comparable(response, await response.text(), product_id))
        assert seen[0][0] == 404
        assert seen[0] == seen[1]
        # Their own key and an admin key stream it, a read's budget counted on the answer.
        for caller in (their_headers, ADMIN):
            async with streaming(api, f"/products/{theirs}/events", caller) as (response, events):
                assert (await events.next()).event == "product"
                if caller is their_headers:
                    assert response.headers["RateLimit-Remaining"]


async def test_with_public_reads_anyone_streams_a_product(settings):
    async with access_api(settings, product_reads="public") as api:
        _, headers = await new_user(api)
        product_id = (await create_product(api, headers))["product_id"]
        async with streaming(api, f"/products/{product_id}/events") as (_, events):
            assert (await events.next()).event == "product"


async def test_the_answers_match_the_openapi_document(api, spec, user):  # noqa: F811
    path = "/products/{product_id}/events"
    product_id = await new_product(api, user)
    async with api.get(f"/products/{product_id}/events") as response:
        await check_against_spec(spec, response, "get", path)
    for url, headers in [
        (f"/products/{product_id + 1_000_000}/events", {}),
        ("/products/nope/events", {}),
        (f"/products/{product_id}/events", {"Last-Event-ID": "x"}),
    ]:
        response = await api.get(url, headers=headers)
        assert response.status in (400, 404)
        await check_against_spec(spec, response, "get", path)


# -- resources: subscriptions freed, streams bounded, shutdown prompt -----------------------------


async def test_a_client_that_leaves_frees_its_subscription(api, user, short_keepalive):
    product_id = await new_product(api, user)
    hub = hub_of(api)
    async with streaming(api, f"/products/{product_id}/events") as (response, events):
        await events.next()
        assert (hub.streams, hub.watched()) == (1, 1)
        response.close()  # the connection itself, as a closed browser tab

    async def freed() -> bool:
        return hub.streams == 0 and hub.watched() == 0

    await wait_for(freed, timeout_s=10, interval_s=0.01)


async def test_open_streams_are_bounded_by_sse_max_streams(settings, user, short_keepalive):
    client = TestClient(TestServer(create_app(settings.replace(sse_max_streams=1))))
    await client.start_server()
    try:
        product_id = await new_product(client, user)
        url = f"/products/{product_id}/events"
        async with streaming(client, url) as (response, events):
            await events.next()
            refused = await client.get(url)
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["details"] == {"max_streams": 1}
            response.close()

        async def admitted_again() -> bool:
            probe = await client.get(url)
            status = probe.status
            probe.close()
            return status == 200

        await wait_for(admitted_again, timeout_s=10, interval_s=0.02)
    finally:
        await client.close()


async def test_shutdown_ends_open_streams_at_once(settings, user):
    """With the default 15 s keep-alive: without the hub's close, aiohttp would wait out its
    shutdown timeout for the stream."""
    server = TestServer(create_app(settings))
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            server.make_url("/products"),
            json={"user_id": user["user_id"], "product_name": "Lamp", "product_price": 1},
        )
        product_id = (await response.json())["product_id"]
        url = server.make_url(f"/products/{product_id}/events")
        async with streaming(http, str(url)) as (_, events):
            await events.next()
            started = time.monotonic()
            closing = asyncio.create_task(server.close())
            await events.end(timeout_s=5)
            await asyncio.wait_for(closing, 10)
            assert time.monotonic() - started < product_stream.KEEPALIVE_S


# -- a real API process ----------------------------------------------------------------------------


@pytest.fixture
def api_process(base_settings, tmp_path) -> Any:
    port = free_port()
    log_path = tmp_path / "api.log"
    env = {**os.environ, **settings_to_env(base_settings), "LOG_FORMAT": "json"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run_api.py"), "--port", str(port), "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_answering(url, process, timeout_s=90, what="run_api.py")
        except RuntimeError as failed:
            raise AssertionError(f"{failed}\n{log_path.read_text()}") from None
        yield url, process
    finally:
        stop(process, timeout_s=30)


async def test_a_real_api_process_streams_a_change_made_through_another_and_stops_promptly(
    api, user, api_process
):
    url, process = api_process
    product_id = await new_product(api, user)
    stream_url = f"{url}/products/{product_id}/events"
    async with aiohttp.ClientSession() as http, streaming(http, stream_url) as (_, events):
        await events.next()
        patched = await api.patch(f"/products/{product_id}", json={"product_name": "moved"})
        assert patched.status == 200
        assert orjson.loads((await events.next()).data)["product_name"] == "moved"
        # SIGTERM: the stream ends and the process exits well within run_api.py's 10 s
        # shutdown timeout (and the 15 s keep-alive).
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await events.end(timeout_s=8)
    await asyncio.to_thread(process.wait, 8)
    assert time.monotonic() - started < 8
