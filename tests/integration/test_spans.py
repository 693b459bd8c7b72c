"""The spans of one product's work, exported through OpenTelemetry (OTLP over HTTP) by the API,
the image worker and the webhook dispatcher to a collector on loopback, form one tree: the
request, its outbox publish, the job and its image stages, the processed event's publish and its
webhook delivery."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from catalogue import spans
from testkit import imagegen
from testkit.workers import ImageServer, WorkerProcess
from tests.integration.conftest import wait_for
from tests.integration.test_api_access import access_api, new_user
from tests.integration.test_webhooks import DEADLINE_S, create, dispatcher, receiver, register

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every span it is sent."""

    spans: list[Span] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Span(
                            attributes.get("service.name", ""),
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                        )
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def start(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def of_trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    started = await Collector().start()
    yield started
    await started.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Any]]:
    started: list[Any] = []
    yield started
    for made in started:
        await made.stop()


async def test_one_products_spans_form_one_tree_across_three_processes(
    settings, collector, receivers, monkeypatch
):
    # The SDK's batch delay, for the subprocesses: spans leave within 0.1 s, not 5.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    traced = settings.replace(
        otel_exporter_otlp_endpoint=f"http://127.0.0.1:{collector.port}",
        webhook_signing_key=secrets.token_urlsafe(32),
        webhook_allow_loopback_urls=True,
        webhook_group_id=f"test-spans-{secrets.token_hex(4)}",
        image_allow_loopback_sources=True,
    )
    images = ImageServer()
    images.routes["/img/span.jpg"] = imagegen.photo_jpeg(320, 240)
    await images.start()
    worker = WorkerProcess(traced)
    trace_id = secrets.token_hex(16)
    try:
        async with access_api(traced) as api:
            assert spans.enabled()
            _, headers = await new_user(api)
            endpoint = await receiver(receivers)
            await register(api, headers, endpoint.url, events=["product.processed"])
            with dispatcher(traced):
                await create(
                    api,
                    {**headers, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                    product_images=[images.url("/img/span.jpg")],
                )

                async def whole_tree() -> bool:
                    names = {s.name for s in collector.of_trace(trace_id)}
                    return "webhook.deliver" in names and "image.upload" in names

                await wait_for(whole_tree, timeout_s=DEADLINE_S * 2)
    finally:
        assert worker.stop() == 0
        await images.stop()
    await asyncio.sleep(0)
    assert not spans.enabled()  # the app's shutdown uninstalled it

    tree = collector.of_trace(trace_id)
    by_id = {s.span_id: s for s in tree}

    def only(name: str, service: str) -> Span:
        (found,) = [s for s in tree if s.name == name and s.service == service]
        return found

    def parent(span: Span) -> Span:
        return by_id[span.parent_id]

    request = only("POST /products", "catalogue-api")
    job = only("job", "catalogue-worker")
    publishes = [s for s in tree if s.name == "outbox.publish"]
    job_publish = parent(job)
    assert job_publish.name == "outbox.publish"
    assert parent(job_publish) == request  # the image job was written by the request
    for stage in ("image.download", "image.compress", "image.upload"):
        assert parent(only(stage, "catalogue-worker")) == job
    delivery = only("webhook.deliver", "catalogue-webhooks")
    event_publish = parent(delivery)
    assert event_publish.name == "outbox.publish"
    assert parent(event_publish) == job  # the processed event was written by the job
    # The created event was published in the trace too (as a child of the request).
    assert len(publishes) >= 3
    assert request.parent_id not in by_id  # its parent is the client's, outside this system
