"""Structured logging: one JSON object per line with `ts`, `level`, `event` and the fields.

Call sites log an event name as the message and the fields as `extra`:
    log.info("image.compressed", extra={"in_bytes": 123, "ms": 4.2})

The API writes a line per request (the access log), so a line must cost little: the formatter
builds the object itself and serialises it with orjson (python-json-logger cost ~11 µs a line, a
fifth of a cached read), and inside a running event loop the handler writes the lines of one
loop iteration with one system call instead of one each. Warnings and errors, and lines logged
outside a loop (CLI tools, the workers' compression processes), are written at once.

The access log goes further (`event_writer`): logging's own path (a LogRecord per call, the
handler chain, the formatter sorting `extra` out of the record's attributes) costs ~20 µs a line,
as much as a third of a cached read, so where the only handler is the one `setup_logging`
installed, its line is built straight from the fields, the same JSON, in ~3 µs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# The W3C traceparent of the work under way (a request that writes, a job, a webhook delivery:
# catalogue/tracing.py sets it): every line logged inside it carries its trace id, and every
# outbox message written inside it carries the header on to Kafka (db/outbox.py).
current_traceparent: ContextVar[str | None] = ContextVar("traceparent", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}
    if (traceparent := current_traceparent.get()) is not None:
        fields["trace_id"] = traceparent[3:35]
    return fields


def _as_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _json_line(line: dict[str, Any]) -> str:
    """`line` as JSON; a datetime as ISO 8601 (orjson writes what isoformat() does)."""
    try:
        return orjson.dumps(line, default=str).decode()
    except TypeError:  # what orjson refuses outright (an int beyond 64 bits, say)
        return json.dumps(line, default=_as_text, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS level event key=value …`, for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower():7} "
        line += f"{record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """`{"level": "INFO", "event": …, <fields>, "exc_info": …, "ts": <ISO 8601, UTC>}`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"level": record.levelname, "event": record.getMessage()}
        line.update(record_fields(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        line["ts"] = datetime.fromtimestamp(record.created, UTC)
        return _json_line(line)


def json_formatter() -> logging.Formatter:
    return JsonFormatter()


class LoopBatchingHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that, inside a running event loop, keeps INFO and DEBUG lines until the
    end of the loop iteration and writes them together (order kept: a warning first writes what
    is waiting). Lines wait for at most one iteration of the loop."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self._write(text)
        else:
            self._enqueue(text)

    def emit_text(self, text: str) -> None:
        """An INFO line already formatted (`event_writer`), written as `emit` writes one."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._enqueue(text)

    def _enqueue(self, text: str) -> None:
        """Under the lock: `text` after what waits, written at the end of the running loop's
        iteration, or at once outside a loop."""
        if self._pending:  # the flush is already scheduled; asking for the loop costs a getpid(2)
            self._pending.append(text)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(text)
            return
        loop.call_soon(self.flush)
        self._pending.append(text)

    def _write(self, text: str) -> None:
        pending = "".join(self._pending) if self._pending else ""
        self._pending.clear()
        self.stream.write(pending + text)
        self.stream.flush()

    def flush(self) -> None:
        self.acquire()  # the loop's callback: emit() runs under the same lock
        try:
            if self._pending:
                self._write("")
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()


# The handler setup_logging installed, while it is the root's only one.
_installed: LoopBatchingHandler | None = None


def event_writer(logger: logging.Logger, event: str) -> Callable[[dict[str, Any]], None]:
    """`logger.info(event, extra=fields)` for a hot path (the access log): when the one handler
    is setup_logging's JSON one at INFO and nothing else is on the way (no filter, no handler of
    the logger's own), the line is built from `fields` and handed to that handler without a
    LogRecord: the same keys in the same order (`level`, `event`, the fields, `trace_id`, `ts`).
    Otherwise (a test's caplog, the console format, another configuration) through logging.
    The caller checks `logger.isEnabledFor(logging.INFO)` first, as it would for logger.info."""

    def direct() -> LoopBatchingHandler | None:
        handler = _installed
        root = logging.root
        handlers = root.handlers
        if handler is None or len(handlers) != 1 or handlers[0] is not handler:
            return None
        if root.filters or handler.filters:
            return None
        if not isinstance(handler.formatter, JsonFormatter) or handler.level > logging.INFO:
            return None
        node: logging.Logger | None = logger
        while node is not None and node is not root:
            if node.handlers or node.filters or not node.propagate:
                return None
            node = node.parent
        return handler

    def write(fields: dict[str, Any]) -> None:
        handler = direct()
        if handler is None:
            logger.info(event, extra=fields)
            return
        line: dict[str, Any] = {"level": "INFO", "event": event, **fields}
        if (traceparent := current_traceparent.get()) is not None:
            line["trace_id"] = traceparent[3:35]
        line["ts"] = datetime.now(UTC)
        handler.emit_text(_json_line(line) + handler.terminator)

    return write


def setup_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    # What a record would otherwise gather on every call and no line of ours shows: the caller's
    # file and line (a stack walk), thread, process and task names (the logging HOWTO's
    # "Optimization" switches). About a third of what an access-log line costs.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LoopBatchingHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else ConsoleFormatter())
    global _installed
    _installed = handler if isinstance(handler.formatter, JsonFormatter) else None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; our own events say what matters.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
