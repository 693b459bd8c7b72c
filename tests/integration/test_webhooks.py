"""Webhooks end to end on the real stack: the API registers endpoints (keys on), its writes put
events in the outbox, the relay publishes them to Kafka, and the dispatcher
(`run_workers.py --role webhooks`, a real subprocess) delivers them, signed, to receivers on
loopback; its attempts are what GET /webhooks/{id}/deliveries shows.

Every receiver listens on 127.0.0.1 (WEBHOOK_ALLOW_LOOPBACK_URLS on, as a development setup
would have it); the one test of a refusal at delivery runs its dispatcher with it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from config import Settings
from testkit import imagegen
from testkit.workers import ImageServer, WorkerProcess
from tests.integration.conftest import wait_for
from tests.integration.test_api_access import ADMIN, access_api, new_user

pytestmark = pytest.mark.integration

SIGNING_KEY = secrets.token_urlsafe(32)
DEADLINE_S = 60


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: records every request, answers `statuses` in turn (the
    last one again and again), or holds every request until the test ends when `hang`."""

    statuses: list[int] = field(default_factory=lambda: [204])
    hang: bool = False
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self.hang:
            await self._release.wait()
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        headers = {"Location": "http://127.0.0.1:9/elsewhere"} if 300 <= status < 400 else {}
        return web.Response(status=status, headers=headers)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self, secret: str) -> list[dict[str, Any]]:
        """Every request's payload, each signature verified by the Standard Webhooks library."""
        verifier = Webhook(secret)
        return [verifier.verify(body, headers) for headers, body in self.received]


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.replace(
        webhook_signing_key=SIGNING_KEY,
        webhook_allow_loopback_urls=True,
        webhook_retry_schedule=(0.3, 0.3),
        webhook_timeout_seconds=2.0,
        webhook_group_id=f"test-webhooks-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
async def api(hook_settings: Settings) -> AsyncIterator[Any]:
    async with access_api(hook_settings) as client:
        yield client


@contextlib.contextmanager
def dispatcher(settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, "--role", "webhooks")
    try:
        yield process
    except BaseException:
        print(process.log()[-6000:])  # pytest shows it with the failure
        raise
    finally:
        process.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        await receiver.stop()


async def receiver(receivers: list[Receiver], **options: Any) -> Receiver:
    made = await Receiver(**options).start()
    receivers.append(made)
    return made


async def register(api: Any, headers: dict[str, str], url: str, **fields: Any) -> dict[str, Any]:
    response = await api.post("/webhooks", json={"url": url, **fields}, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def deliveries(api: Any, headers: dict[str, str], webhook_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/webhooks/{webhook_id}/deliveries", headers=headers)
    assert response.status == 200, await response.text()
    listed: list[dict[str, Any]] = (await response.json())["deliveries"]
    return listed


async def create(api: Any, headers: dict[str, str], **fields: Any) -> str:
    body = {"product_name": "Desk lamp", "product_price": 19.99, **fields}
    response = await api.post("/products", json=body, headers=headers)
    assert response.status == 201, await response.text()
    product_id: str = (await response.json())["product_id"]
    return product_id


# -- delivery ------------------------------------------------------------------------------------


async def test_an_endpoint_receives_each_of_its_users_events_once_signed(
    api, hook_settings, receivers
):
    user_id, headers = await new_user(api)
    _, other = await new_user(api)
    everything = await receiver(receivers)
    deletions = await receiver(receivers)
    hook = await register(api, headers, everything.url)
    only_deleted = await register(api, headers, deletions.url, events=["product.deleted"])
    assert hook["events"] == ["product.created", "product.updated", "product.processed",
                              "product.deleted"]  # fmt: skip
    assert hook["secret"].startswith("whsec_")
    assert hook["enabled"] is True

    with dispatcher(hook_settings):
        product_id = await create(api, headers)
        await create(api, other)  # another user's: never sent to this one's endpoints
        patched = await api.patch(
            f"/products/{product_id}", json={"product_name": "Floor lamp"}, headers=headers
        )
        assert patched.status == 200
        assert (await api.delete(f"/products/{product_id}", headers=headers)).status == 204

        await wait_for(lambda: _at_least(everything, 3), timeout_s=DEADLINE_S)
        await wait_for(lambda: _at_least(deletions, 1), timeout_s=DEADLINE_S)

    # Up to WEBHOOK_ENDPOINT_CONCURRENCY deliveries run at once, so they may arrive in any
    # order (Standard Webhooks promises none): put them in the order of their events.
    verified = zip(everything.events(hook["secret"]), everything.received, strict=True)
    ordered = sorted(verified, key=lambda pair: pair[0]["timestamp"])
    events = [event for event, _ in ordered]
    assert [e["type"] for e in events] == ["product.created", "product.updated", "product.deleted"]
    assert events[0]["data"]["product_id"] == product_id
    assert events[0]["data"]["user_id"] == user_id
    assert events[1]["data"]["product_name"] == "Floor lamp"
    assert events[2]["data"] == {"product_id": product_id, "user_id": user_id}
    assert all(set(e) == {"type", "timestamp", "data"} for e in events)
    ids = [request[0]["webhook-id"] for _, request in ordered]
    assert len(set(ids)) == 3
    assert all(i.startswith("evt_") for i in ids)
    # The other endpoint's secret is its own: the first one's does not verify its deliveries.
    assert [e["type"] for e in deletions.events(only_deleted["secret"])] == ["product.deleted"]
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        deletions.events(hook["secret"])
    # The same event, the same id at both endpoints.
    assert deletions.received[0][0]["webhook-id"] == ids[2]

    listed = await deliveries(api, headers, hook["webhook_id"])
    assert [d["event_type"] for d in listed] == ["product.deleted", "product.updated",
                                                 "product.created"]  # fmt: skip
    for delivery in listed:
        assert delivery["state"] == "delivered"
        assert delivery["next_attempt_at"] is None
        assert len(delivery["attempts"]) == 1, json.dumps(delivery)
        (attempt,) = delivery["attempts"]
        assert attempt["status_code"] == 204
        assert attempt["error"] is None
        assert attempt["duration_ms"] >= 0


async def _at_least(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def test_a_failed_attempt_is_retried_and_then_delivered(api, hook_settings, receivers):
    _, headers = await new_user(api)
    flaky = await receiver(receivers, statuses=[500, 503, 204])
    hook = await register(api, headers, flaky.url, events=["product.created"])

    # Room for more attempts than the three the receiver needs: on a loaded machine an attempt
    # can time out (WEBHOOK_TIMEOUT_SECONDS) before it reaches the receiver, and such a miss
    # must not use up the schedule (CI saw one).
    with dispatcher(hook_settings.replace(webhook_retry_schedule=(0.3,) * 5)):
        await create(api, headers)

        async def delivered() -> list[dict[str, Any]] | None:
            listed = await deliveries(api, headers, hook["webhook_id"])
            return listed if listed and listed[0]["state"] == "delivered" else None

        (delivery,) = await wait_for(delivered, timeout_s=DEADLINE_S)

    *failed, last = delivery["attempts"]
    assert (last["status_code"], last["error"]) == (204, None)
    # Normally [500, 503]; an attempt that timed out on a loaded machine says so instead.
    assert [a["status_code"] for a in failed if a["status_code"]] in ([500, 503], [500], [503])
    assert all(a["error"] for a in failed)
    assert len(flaky.received) == 3  # the receiver's three answers, nothing after the 204
    # Each attempt signed anew (its own timestamp), the message id the same.
    assert len({h["webhook-id"] for h, _ in flaky.received}) == 1
    assert len(flaky.events(hook["secret"])) == 3


async def test_an_endpoint_failing_a_whole_schedule_is_disabled(api, hook_settings, receivers):
    _, headers = await new_user(api)
    broken = await receiver(receivers, statuses=[500])
    hook = await register(api, headers, broken.url)

    with dispatcher(hook_settings):
        await create(api, headers)

        async def disabled() -> dict[str, Any] | None:
            response = await api.get("/webhooks", headers=headers)
            (listed,) = await response.json()
            return listed if not listed["enabled"] else None

        shown = await wait_for(disabled, timeout_s=DEADLINE_S)
        assert "failed for a whole retry schedule" in shown["disabled_reason"]
        assert shown["disabled_at"] is not None
        assert shown["last_success_at"] is None

        # Once disabled, later events are not queued for it.
        await create(api, headers)
        (delivery,) = await deliveries(api, headers, hook["webhook_id"])

    assert delivery["state"] == "failed"
    assert delivery["next_attempt_at"] is None
    # The first attempt and one per step of the schedule (two steps here).
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500], json.dumps(
        delivery["attempts"]
    )
    assert len(broken.received) == 3


async def test_a_redirect_is_not_followed(api, hook_settings, receivers):
    _, headers = await new_user(api)
    redirecting = await receiver(receivers, statuses=[307, 204])
    hook = await register(api, headers, redirecting.url, events=["product.created"])

    with dispatcher(hook_settings):
        await create(api, headers)

        async def retried() -> list[dict[str, Any]] | None:
            listed = await deliveries(api, headers, hook["webhook_id"])
            return listed if listed and listed[0]["state"] == "delivered" else None

        (delivery,) = await wait_for(retried, timeout_s=DEADLINE_S)

    first, second = delivery["attempts"]
    assert first["status_code"] == 307
    assert first["error"] == "HTTP 307: redirects are not followed"
    assert second["status_code"] == 204


async def test_a_name_resolving_to_loopback_is_never_connected_without_the_switch(
    api, hook_settings, receivers
):
    """Registered by name (names are judged at delivery, on the address connected); the
    dispatcher, run with loopback closed, refuses to connect and records why."""
    _, headers = await new_user(api)
    target = await receiver(receivers)
    hook = await register(
        api, headers, f"http://localhost:{target.port}/hook", events=["product.created"]
    )

    closed = hook_settings.replace(webhook_allow_loopback_urls=False)
    with dispatcher(closed):
        await create(api, headers)

        async def attempted() -> list[dict[str, Any]] | None:
            listed = await deliveries(api, headers, hook["webhook_id"])
            return listed if listed and listed[0]["attempts"] else None

        (delivery,) = await wait_for(attempted, timeout_s=DEADLINE_S)

    attempt = delivery["attempts"][0]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("blocked: ")
    assert "loopback" in attempt["error"]
    assert target.received == []


async def test_a_hanging_endpoint_delays_neither_images_nor_other_endpoints(
    api, hook_settings, settings, receivers
):
    """One endpoint never answers (each attempt ends at WEBHOOK_TIMEOUT_SECONDS, and is
    retried); meanwhile products are processed by the image worker and another endpoint gets
    every product.processed event."""
    _, headers = await new_user(api)
    hanging = await receiver(receivers, hang=True)
    healthy = await receiver(receivers)
    await register(api, headers, hanging.url)
    steady = await register(api, headers, healthy.url, events=["product.processed"])

    images = ImageServer()
    sample = imagegen.photo_jpeg(640, 480)
    count = 6
    for n in range(count):
        images.routes[f"/img/{n}.jpg"] = sample
    await images.start()
    worker_settings = hook_settings.replace(image_allow_loopback_sources=True)
    worker = WorkerProcess(worker_settings)
    try:
        with dispatcher(hook_settings.replace(webhook_endpoint_concurrency=1)):
            started = time.monotonic()
            ids = [
                await create(api, headers, product_images=[images.url(f"/img/{n}.jpg")])
                for n in range(count)
            ]

            async def processed() -> bool:
                return len(healthy.received) >= count

            await wait_for(processed, timeout_s=DEADLINE_S * 2)
            # The hanging endpoint held one request at a time (its concurrency), no more.
            # The hanging endpoint held one request at a time (its concurrency), each for the
            # whole timeout: no more requests than timeouts fit in the time taken, plus one.
            held_s = hook_settings.webhook_timeout_seconds
            assert 1 <= len(hanging.received) <= (time.monotonic() - started) / held_s + 1
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
        await images.stop()

    events = healthy.events(steady["secret"])
    assert sorted(e["data"]["product_id"] for e in events) == sorted(ids)
    for event in events:
        assert event["type"] == "product.processed"
        assert event["data"]["processing_status"] == "done"
        (image,) = event["data"]["images"]
        assert image["renditions"], "the processed event carries the renditions"


# -- registration ----------------------------------------------------------------------------------


async def test_registration_refuses_bad_input_naming_the_field(api):
    _, headers = await new_user(api)
    cases = [
        ({}, "url"),
        ({"url": 7}, "url"),
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "url"),
        ({"url": "https://hooks.example.com/x#frag"}, "url"),
        ({"url": "https://hooks.example.com/" + "x" * 2100}, "url"),
        ({"url": "https://hooks.example.com/x", "events": []}, "events"),
        ({"url": "https://hooks.example.com/x", "events": "product.created"}, "events"),
        ({"url": "https://hooks.example.com/x", "events": ["product.sold"]}, "events[0]"),
        (
            {"url": "https://hooks.example.com/x", "events": ["product.created"] * 2},
            "events",
        ),
    ]
    for body, field_name in cases:
        response = await api.post("/webhooks", json=body, headers=headers)
        assert response.status == 400, (body, await response.text())
        assert (await response.json())["details"] == {"field": field_name}, body


async def test_a_literal_address_refused_by_the_rules_is_a_400(hook_settings):
    closed = hook_settings.replace(webhook_allow_loopback_urls=False)
    async with access_api(closed) as api:
        _, headers = await new_user(api)
        for url in (
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest",
            "http://10.0.0.8/hook",
        ):
            response = await api.post("/webhooks", json={"url": url}, headers=headers)
            assert response.status == 400, url
            body = await response.json()
            assert body["details"] == {"field": "url"}
            assert "address rules" in body["message"]
        # A name is judged at delivery, on the address it resolves to then.
        named = await api.post(
            "/webhooks", json={"url": "https://hooks.example.com/in"}, headers=headers
        )
        assert named.status == 201


async def test_webhooks_are_a_users_own(api):
    _, mine = await new_user(api)
    other_id, theirs = await new_user(api)
    hook = await register(api, mine, "https://hooks.example.com/mine")
    hook_id = hook["webhook_id"]

    for method, path in (
        ("DELETE", f"/webhooks/{hook_id}"),
        ("GET", f"/webhooks/{hook_id}/deliveries"),
    ):
        response = await api.request(method, path, headers=theirs)
        assert response.status == 404, (method, path)
    assert await (await api.get("/webhooks", headers=theirs)).json() == []
    forbidden = await api.get(f"/webhooks?user_id={other_id}", headers=mine)
    assert forbidden.status == 403
    assert (await api.get("/webhooks", headers={})).status == 401
    # The admin acts for a user it names.
    assert len(await (await api.get(f"/webhooks?user_id={hook['user_id']}", headers=ADMIN)).json())

    listed = await (await api.get("/webhooks", headers=mine)).json()
    assert [h["webhook_id"] for h in listed] == [hook_id]
    assert "secret" not in listed[0]
    assert (await api.delete(f"/webhooks/{hook_id}", headers=mine)).status == 204
    assert (await api.delete(f"/webhooks/{hook_id}", headers=mine)).status == 404


async def test_a_user_has_a_bounded_number_of_webhooks(api):
    _, headers = await new_user(api)
    for n in range(20):
        await register(api, headers, f"https://hooks.example.com/{n}")
    response = await api.post(
        "/webhooks", json={"url": "https://hooks.example.com/21"}, headers=headers
    )
    assert response.status == 409


async def test_without_a_signing_key_registration_answers_503_naming_it(settings):
    async with access_api(settings.replace(webhook_signing_key="")) as api:
        _, headers = await new_user(api)
        response = await api.post(
            "/webhooks", json={"url": "https://hooks.example.com/x"}, headers=headers
        )
        assert response.status == 503
        assert "WEBHOOK_SIGNING_KEY" in (await response.json())["message"]


def test_the_webhooks_role_without_a_signing_key_exits_2_naming_it(settings):
    process = WorkerProcess(settings.replace(webhook_signing_key=""), "--role", "webhooks")
    assert process.process.wait(timeout=60) == 2
    assert "WEBHOOK_SIGNING_KEY" in process.log()
    process.stop()


# -- one trace per product -------------------------------------------------------------------------


def lines_of(log: str) -> list[dict[str, Any]]:
    parsed = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            if isinstance(value := json.loads(line), dict):
                parsed.append(value)
    return parsed


async def test_one_trace_runs_from_the_request_through_the_worker_to_the_webhook(
    api, hook_settings, receivers
):
    """The client's traceparent: the API continues it, the job and the event carry it through
    the outbox and Kafka, and every worker line of the product's job and the dispatcher's
    attempt line carry its trace id."""
    _, headers = await new_user(api)
    endpoint = await receiver(receivers)
    hook = await register(api, headers, endpoint.url, events=["product.processed"])
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"

    images = ImageServer()
    images.routes["/img/traced.jpg"] = imagegen.photo_jpeg(320, 240)
    await images.start()
    worker = WorkerProcess(hook_settings.replace(image_allow_loopback_sources=True))
    try:
        with dispatcher(hook_settings) as hooks:
            product_id = await create(
                api,
                {**headers, "traceparent": traceparent},
                product_images=[images.url("/img/traced.jpg")],
            )
            await wait_for(lambda: _at_least(endpoint, 1), timeout_s=DEADLINE_S * 2)

            def attempt_logged() -> list[dict[str, Any]]:
                return [
                    line
                    for line in lines_of(hooks.log())
                    # Other tests' endpoints may be retried too: this test's one only.
                    if line["event"] == "webhook.attempt"
                    and str(line["webhook_id"]) == hook["webhook_id"]
                ]

            (attempt,) = await wait_for(_async(attempt_logged), timeout_s=DEADLINE_S)
    finally:
        assert worker.stop() == 0
        await images.stop()

    assert attempt["trace_id"] == trace_id
    job_lines = [
        line
        for line in lines_of(worker.log())
        if str(line.get("product_id")) == product_id and line["event"].startswith("job.")
    ]
    assert {line["event"] for line in job_lines} >= {"job.received"}
    assert all(line.get("trace_id") == trace_id for line in job_lines), job_lines
    stage_lines = [line for line in lines_of(worker.log()) if line.get("trace_id") == trace_id]
    assert len(stage_lines) > len(job_lines)  # the image stages' lines too


def _async(function: Any) -> Any:
    async def call() -> Any:
        return function()

    return call


async def test_an_endpoint_deleted_during_an_attempt_leaves_nothing_behind(
    api, hook_settings, receivers, db
):
    _, headers = await new_user(api)
    hanging = await receiver(receivers, hang=True)
    hook = await register(api, headers, hanging.url, events=["product.created"])

    with dispatcher(hook_settings) as hooks:
        await create(api, headers)
        await wait_for(lambda: _at_least(hanging, 1), timeout_s=DEADLINE_S)
        deleted = await api.delete(f"/webhooks/{hook['webhook_id']}", headers=headers)
        assert deleted.status == 204
        hanging._release.set()  # the attempt ends now, its delivery gone

        def attempt_ended() -> bool:
            return any(
                line["event"] == "webhook.attempt" and str(line["webhook_id"]) == hook["webhook_id"]
                for line in lines_of(hooks.log())
            )

        await wait_for(_async(attempt_ended), timeout_s=DEADLINE_S)
        assert hooks.process.poll() is None
    assert "webhook.record_failed" not in hooks.log()
    left = "SELECT count(*) FROM webhook_attempts WHERE webhook_id = $1"
    assert await db.fetchval(left, int(hook["webhook_id"])) == 0
