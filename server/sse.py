"""Server-Sent Events framing (WHATWG HTML, "Server-sent events"): the bytes of one event, of a
comment and of a reconnection delay, for any `text/event-stream` response.

Pure functions, so the framing rules have unit tests of their own: a field's value ends at the
first CR, LF or CRLF, so multi-line data goes out as one `data:` line per line (the client joins
them with LF again), and an event name or id holding a line break is refused rather than let it
end its field early and inject another.
"""

from __future__ import annotations

import re

# What ends a line in an event stream: CRLF, LF or CR alone.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_UNSAFE_IN_FIELD = re.compile(r"[\r\n\x00]")  # NUL: a client ignores an id that holds one


def _field_value(name: str, value: str) -> bytes:
    if _UNSAFE_IN_FIELD.search(value):
        raise ValueError(f"an event's {name} may hold no CR, LF or NUL: {value!r}")
    return value.encode()


def frame(data: bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """One event: `event:` and `id:` when given, then `data:` lines, then the blank line that
    dispatches it. `data` is UTF-8 text (the product's JSON); each of its lines is one field."""
    frame = bytearray()
    if event is not None:
        frame += b"event: " + _field_value("event", event) + b"\n"
    if id is not None:
        frame += b"id: " + _field_value("id", id) + b"\n"
    for line in _LINE_BREAK.split(data):
        frame += b"data: " + line + b"\n"
    frame += b"\n"
    return bytes(frame)


def comment(text: str = "") -> bytes:
    """A comment line: clients ignore it, proxies see traffic (a keep-alive)."""
    return b":" + (b" " + _field_value("comment", text) if text else b"") + b"\n\n"


def retry(milliseconds: int) -> bytes:
    """How long the client waits before reconnecting after the stream ends."""
    if milliseconds < 0:
        raise ValueError(f"a reconnection delay is not negative: {milliseconds}")
    return b"retry: %d\n\n" % milliseconds
