"""Reading JSON request bodies with the API's error rules."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from server.errors import ApiError

MAX_BODY_BYTES = 1024 * 1024


async def read_json(
    request: web.Request, content_types: tuple[str, ...] = ("application/json",)
) -> Any:
    if request.content_type not in content_types:
        raise ApiError(415, f"Content-Type must be {' or '.join(content_types)}")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        # Answer before reading: the client learns at once and we buffer nothing.
        raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
    # A chunked body has no length: aiohttp enforces client_max_size while reading (413 too).
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
