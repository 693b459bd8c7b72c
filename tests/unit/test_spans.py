"""catalogue.spans with the SDK's in-memory exporter: a step is a span, child of the
traceparent it is given, and its block runs within the span's own traceparent (so logs, outbox
messages and nested steps follow it); without an exporter a step is only a trace step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from catalogue import spans, tracing
from config.logging import current_traceparent
from db.outbox import OutboxMessage

CLIENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans.install(provider)
    yield exporter
    spans.uninstall()
    provider.shutdown()


def test_nested_steps_are_a_span_tree_under_the_clients_parent(exported):
    with spans.step("POST /products", CLIENT, "server") as note:
        note(**{"http.response.status_code": 201})
        request_traceparent = current_traceparent.get()
        message = OutboxMessage("jobs", "1", "{}")
        with spans.step("image.download", current_traceparent.get()):
            pass
    job_parent = message.traceparent
    with spans.step("job", job_parent, "consumer"):
        pass

    request, download, job = sorted(exported.get_finished_spans(), key=lambda s: s.start_time)
    assert {s.context.trace_id for s in (request, download, job)} == {
        int(tracing.trace_id(CLIENT), 16)
    }
    assert request.parent.span_id == int(CLIENT[36:52], 16)
    assert download.parent.span_id == request.context.span_id
    assert job.parent.span_id == request.context.span_id  # via the outbox message's header
    assert request.attributes["http.response.status_code"] == 201
    assert request_traceparent == f"00-{tracing.trace_id(CLIENT)}-{request.context.span_id:016x}-01"
    assert current_traceparent.get() is None


def test_a_step_without_a_parent_starts_a_trace(exported):
    with spans.step("job", None):
        started = current_traceparent.get()
    (job,) = exported.get_finished_spans()
    assert job.parent is None
    assert started is not None
    assert tracing.trace_id(started) == f"{job.context.trace_id:032x}"


def test_without_an_exporter_a_step_is_a_trace_step_only():
    assert not spans.enabled()
    with spans.step("job", CLIENT) as note:
        note(anything=1)  # a no-op
        inside = current_traceparent.get()
    assert inside is not None
    assert tracing.trace_id(inside) == tracing.trace_id(CLIENT)
    assert inside != CLIENT
