"""Spans of one product's work, exported through OpenTelemetry when OTEL_EXPORTER_OTLP_ENDPOINT
is set: the API request, each outbox publish, the job, each image stage, each webhook delivery,
in one trace (the traceparent catalogue/tracing.py carries between processes).

`step(name, parent)` runs a block as one step of a trace: with an exporter configured, as a span
(child of `parent`, a traceparent) whose own traceparent the block runs within; without one, as
`tracing.within(next_step(parent))` and nothing else: OpenTelemetry is not even imported, so
nothing slows down. Each process configures it once at start-up (`configure`) and flushes what
is left at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from catalogue.tracing import next_step, within
from config import Settings

Note = Callable[..., None]  # sets attributes on the step's span (a no-op without one)

_tracer: Any = None  # the SDK's tracer once configured; None: no spans at all
_otel: Any = None  # the modules a span needs, imported with the SDK


def _no_note(**_attributes: Any) -> None:
    return None


def configure(settings: Settings, service: str) -> Callable[[], None]:
    """Exports this process's spans when OTEL_EXPORTER_OTLP_ENDPOINT is set (in batches, as
    the SDK does); returns what flushes and stops it at shutdown."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return lambda: None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)

    def shutdown() -> None:
        uninstall()
        provider.shutdown()

    return shutdown


def install(provider: Any) -> None:
    """Spans from now on go to `provider`'s processors (tests give one an in-memory exporter)."""
    global _tracer, _otel
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _otel = (trace, context, TraceContextTextMapPropagator())
    _tracer = provider.get_tracer("product-catalogue")


def uninstall() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


_KINDS = {"internal": "INTERNAL", "server": "SERVER", "client": "CLIENT"}
_KINDS |= {"producer": "PRODUCER", "consumer": "CONSUMER"}


@contextmanager
def step(
    name: str, parent: str | None, kind: str = "internal", **attributes: Any
) -> Iterator[Note]:
    """The block as one step of `parent`'s trace (None: a new trace); yields a function that
    sets attributes on its span."""
    tracer = _tracer
    if tracer is None:
        with within(next_step(parent)):
            yield _no_note
        return
    trace, context, propagator = _otel
    parent_context = propagator.extract({"traceparent": parent}) if parent else context.Context()
    with tracer.start_as_current_span(
        name,
        context=parent_context,
        kind=getattr(trace.SpanKind, _KINDS[kind]),
        attributes=attributes,
    ) as span:
        own = span.get_span_context()
        traceparent = f"00-{own.trace_id:032x}-{own.span_id:016x}-{int(own.trace_flags):02x}"
        with within(traceparent):
            yield lambda **values: span.set_attributes(values)
