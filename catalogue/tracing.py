"""W3C Trace Context: the `traceparent` of one product's work, carried from the request that
queued it through the outbox and Kafka headers to the worker and the webhook dispatcher.

`00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`. The API continues a client's valid
header (a new parent id, the same trace) or starts a trace for each write; whatever runs
`within(traceparent)` logs its trace id on every line (config.logging) and writes it into every
outbox message (db.outbox). Pure functions, but for the context variable they set.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from config.logging import current_traceparent

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_PARENT = "0" * 32, "0" * 16
SAMPLED = "01"


def parse(header: str | None) -> str | None:
    """The header as version 00 writes it, or None when it is absent or invalid (the
    specification's rules: version ff and all-zero ids are invalid, and version 00 has exactly
    four fields; a later version's extra fields are dropped)."""
    if header is None:
        return None
    match = _TRACEPARENT.fullmatch(header.strip().lower())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00" and rest:
        return None
    return f"00-{trace_id}-{parent_id}-{flags}"


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{SAMPLED}"


def child_of(traceparent: str) -> str:
    """The same trace, a new parent id: the header the next step's work carries."""
    return f"{traceparent[:36]}{secrets.token_hex(8)}{traceparent[52:]}"


def next_step(traceparent: str | None) -> str:
    """The traceparent of the work that follows `traceparent` (a new trace after none)."""
    return child_of(traceparent) if traceparent is not None else new_traceparent()


def continue_or_start(header: str | None) -> str:
    """The next step of a client's header, when it is valid; else a new trace."""
    return next_step(parse(header))


def trace_id(traceparent: str) -> str:
    return traceparent[3:35]


def from_kafka_headers(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    for name, value in headers or ():
        if name == HEADER:
            return parse(value.decode("ascii", errors="replace"))
    return None


def kafka_headers(traceparent: str | None) -> list[tuple[str, bytes]]:
    return [(HEADER, traceparent.encode())] if traceparent else []


@contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """Runs the block as part of this trace (None: of none)."""
    token = current_traceparent.set(traceparent)
    try:
        yield
    finally:
        current_traceparent.reset(token)
