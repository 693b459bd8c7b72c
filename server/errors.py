"""The one error shape of the API: `{"status": "error", "message": …, "details": …}`."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """An error to answer with; `message` is safe to show to the client."""

    def __init__(
        self,
        status: int,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        # Fields the answer carries besides the body (WWW-Authenticate, Retry-After, RateLimit-*).
        self.headers = headers if headers is not None else {}


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, {"field": field} if field else None)


def error_response(
    status: int, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps({"status": "error", "message": message, "details": details})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)
