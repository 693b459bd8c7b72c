"""The JSON log lines and how they are written: one object per line, and, inside a running
event loop, the lines of one loop iteration written together, in order."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from config.logging import (
    LoopBatchingHandler,
    current_traceparent,
    event_writer,
    json_formatter,
    setup_logging,
)


@pytest.fixture
def logged() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = LoopBatchingHandler(stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger(f"test.logging.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_holds_level_event_fields_and_a_utc_timestamp(logged):
    logger, stream = logged
    logger.info("image.compressed", extra={"in_bytes": 123, "ms": 4.2, "user_id": None})
    [line] = lines(stream)
    assert list(line) == ["level", "event", "in_bytes", "ms", "user_id", "ts"]
    assert line["level"] == "INFO"
    assert line["event"] == "image.compressed"
    assert (line["in_bytes"], line["ms"], line["user_id"]) == (123, 4.2, None)
    assert line["ts"].endswith("+00:00")


def test_values_json_cannot_hold_are_written_as_text(logged):
    logger, stream = logged
    logger.info("odd", extra={"price": Decimal("1.50"), "huge": 2**70, "key": b"x"})
    [line] = lines(stream)
    assert line["price"] == "1.50"
    assert line["huge"] in (2**70, str(2**70))


def test_an_exception_is_written_with_its_traceback(logged):
    logger, stream = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("task.crashed", extra={"task": "relay"})
    [line] = lines(stream)
    assert line["level"] == "ERROR"
    assert "ValueError: boom" in line["exc_info"]


def test_outside_an_event_loop_a_line_is_written_at_once(logged):
    logger, stream = logged
    logger.info("first")
    assert [line["event"] for line in lines(stream)] == ["first"]


def test_inside_a_loop_lines_wait_for_the_end_of_the_iteration_and_keep_their_order(logged):
    logger, stream = logged

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        logger.info("a")
        logger.info("b")
        waiting = [line["event"] for line in lines(stream)]
        await asyncio.sleep(0)  # the loop runs its callbacks: the flush among them
        flushed = [line["event"] for line in lines(stream)]
        logger.info("c")
        logger.warning("d")  # a warning is written at once, after what was waiting
        return waiting, flushed, [line["event"] for line in lines(stream)]

    waiting, flushed, after_warning = asyncio.run(scenario())
    assert waiting == []
    assert flushed == ["a", "b"]
    assert after_warning == ["a", "b", "c", "d"]


def test_closing_the_handler_writes_what_waits(logged):
    logger, stream = logged

    async def log_and_close() -> list[str]:
        logger.info("last words")
        logger.handlers[0].close()
        return [line["event"] for line in lines(stream)]

    assert asyncio.run(log_and_close()) == ["last words"]


# -- event_writer: the access log's line without a LogRecord ------------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FIELDS = {"method": "GET", "path": "/products/7", "status": 200, "ms": 0.25, "user_id": None}


@contextlib.contextmanager
def setup_logging_alone() -> Iterator[tuple[io.StringIO, list[logging.LogRecord]]]:
    """setup_logging's JSON handler on a stream as the root's only handler, as run_api.py has it
    (pytest's own capture handlers set aside meanwhile), and the LogRecords made meanwhile."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    make_record = logging.getLogRecordFactory()
    made: list[logging.LogRecord] = []

    def counted(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(record := make_record(*args, **kwargs))
        return record

    stream = io.StringIO()
    setup_logging("info", "json", stream)
    logging.setLogRecordFactory(counted)
    try:
        yield stream, made
    finally:
        logging.setLogRecordFactory(make_record)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_an_event_line_is_the_line_logger_info_writes_but_its_timestamp():
    logger = logging.getLogger("test.logging.events")
    write = event_writer(logger, "http.request")
    token = current_traceparent.set(TRACEPARENT)
    with setup_logging_alone() as (stream, records):
        try:
            logger.info("http.request", extra=FIELDS)
            write(FIELDS)
        finally:
            current_traceparent.reset(token)
    assert len(records) == 1  # logger.info's: the writer made none
    by_logger, by_writer = lines(stream)
    assert list(by_writer) == list(by_logger)  # level, event, the fields, trace_id, ts
    assert list(by_writer)[-2:] == ["trace_id", "ts"]
    assert {k: v for k, v in by_writer.items() if k != "ts"} == {
        k: v for k, v in by_logger.items() if k != "ts"
    }
    assert by_writer["trace_id"] == TRACEPARENT[3:35]
    assert by_writer["ts"].endswith("+00:00")
    assert by_writer["ts"] >= by_logger["ts"]


def test_event_lines_wait_for_the_loop_iteration_in_order_with_other_lines():
    logger = logging.getLogger("test.logging.events")
    write = event_writer(logger, "second")

    async def scenario(stream: io.StringIO) -> tuple[list[str], list[str]]:
        logger.info("first")
        write({})
        logger.info("third")
        waiting = [line["event"] for line in lines(stream)]
        await asyncio.sleep(0)
        return waiting, [line["event"] for line in lines(stream)]

    with setup_logging_alone() as (stream, records):
        assert asyncio.run(scenario(stream)) == ([], ["first", "second", "third"])
    assert [r.getMessage() for r in records] == ["first", "third"]


def test_with_another_handler_on_the_way_an_event_goes_through_logging(caplog):
    # A capturing handler beside setup_logging's on the root: it must see the record.
    logger = logging.getLogger("test.logging.events")
    with setup_logging_alone() as (stream, records):
        logging.getLogger().addHandler(caplog.handler)
        event_writer(logger, "http.request")(FIELDS)
    [record] = records
    assert record.getMessage() == "http.request"
    assert (record.path, record.status) == ("/products/7", 200)  # type: ignore[attr-defined]
    assert record in caplog.records
    assert lines(stream)[0]["path"] == "/products/7"  # and the stream still has its line


def test_without_setup_logging_an_event_goes_through_logging(logged):
    logger, stream = logged  # a handler of the logger's own, as a library's user might set up
    event_writer(logger, "http.request")(FIELDS)
    [line] = lines(stream)
    assert (line["event"], line["path"]) == ("http.request", "/products/7")
