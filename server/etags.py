"""Strong entity tags of product representations, and the conditional-request rules (RFC 9110
§13): an ETag changes whenever the body does, since it is a hash of the body itself."""

from __future__ import annotations

import hashlib


def etag_of(body: bytes) -> str:
    return f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """If-None-Match on a GET: whether the client's copy is current (answer 304). Weak
    comparison, as the RFC asks for If-None-Match."""
    if header is None:
        return False
    tags = _tags(header)
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)


def match_fails(header: str | None, etag: str | None) -> bool:
    """If-Match on a write: whether the precondition fails (answer 412). Strong comparison;
    `etag` None: there is no current representation."""
    if header is None:
        return False
    tags = _tags(header)
    if etag is None:
        return True
    return not ("*" in tags or etag in tags)
