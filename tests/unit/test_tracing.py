"""W3C Trace Context as the API, the worker and the dispatcher use it: which headers are valid,
what the next step's header is, and that whatever runs within a trace logs its id and writes it
into the outbox."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from catalogue import tracing
from config.logging import current_traceparent, setup_logging
from db.outbox import OutboxMessage

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (VALID, VALID),
        (VALID.upper(), VALID),
        (f" {VALID} ", VALID),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", VALID),
        (None, None),
        ("", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", None),
    ],
)
def test_a_traceparent_is_taken_only_as_the_specification_writes_it(header, parsed):
    assert tracing.parse(header) == parsed


def test_the_next_step_keeps_the_trace_and_draws_a_new_parent():
    step = tracing.next_step(VALID)
    assert tracing.parse(step) == step
    assert tracing.trace_id(step) == tracing.trace_id(VALID) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert step[36:52] != VALID[36:52]
    assert step.endswith("-01")
    fresh = tracing.next_step(None)
    assert tracing.parse(fresh) == fresh
    assert tracing.trace_id(fresh) != tracing.trace_id(tracing.next_step(None))
    assert tracing.continue_or_start("garbage") != tracing.continue_or_start("garbage")
    assert tracing.trace_id(tracing.continue_or_start(VALID)) == tracing.trace_id(VALID)


def test_kafka_headers_carry_it_there_and_back():
    headers = tracing.kafka_headers(VALID)
    assert headers == [("traceparent", VALID.encode())]
    assert tracing.from_kafka_headers([("other", b"x"), *headers]) == VALID
    assert tracing.from_kafka_headers(None) is None
    assert tracing.from_kafka_headers([("traceparent", b"\xff\xfe")]) is None
    assert tracing.kafka_headers(None) == []


def test_within_a_trace_every_line_and_outbox_message_carries_it():
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    log = logging.getLogger("tracing-test")
    try:
        with tracing.within(VALID):
            log.info("inside", extra={"n": 1})
            message = OutboxMessage("topic", "1", "{}")
        log.info("outside")
    finally:
        setup_logging("info", "json")
    inside, outside = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == tracing.trace_id(VALID)
    assert "trace_id" not in outside
    assert message.traceparent == VALID
    assert OutboxMessage("topic", "1", "{}").traceparent is None
    assert current_traceparent.get() is None
