"""The JSON log lines and how they are written: one object per line, and, inside a running
event loop, the lines of one loop iteration written together, in order."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from decimal import Decimal

import pytest

from config.logging import LoopBatchingHandler, json_formatter


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
