"""The demo's one HTTP client: every request the demo makes, and the curl line it prints.

Requests to the API carry :attr:`DemoClient.headers`, and so does the printed ``curl`` line: the
demo user's API key is one entry there (``Authorization: Bearer …``, set by :meth:`use_key`).
A request may add headers of its own (the demo's admin key, for the calls only an admin makes);
those never reach the curl line.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

REQUEST_TIMEOUT_S = 10.0


def bearer(api_key: str) -> dict[str, str]:
    """The header that sends an API key."""
    return {"Authorization": f"Bearer {api_key}"}


class ClientFailure(Exception):
    """A request did not get an answer (connection refused, timeout): one line saying which."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class DemoClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self.headers = dict(headers or {})

    def api(self, path: str) -> str:
        return self.api_url + path

    def use_key(self, api_key: str | None) -> None:
        """Sends ``api_key`` as the bearer of every API request from now on (None: no key, the
        open contract of AUTH_MODE=off)."""
        self.headers.pop("Authorization", None)
        if api_key is not None:
            self.headers.update(bearer(api_key))

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        if not url.startswith(self.api_url + "/"):
            return {}
        return {**self.headers, **(extra or {})}

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """``headers`` are added to (and override) the client's own, on API URLs only."""
        headers = self._headers_for(url, headers)
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers = {**headers, "Content-Type": "application/json"}
        try:
            async with self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as response:
                return Answer(response.status, response.content_type, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientFailure(
                f"{method} {url}: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc

    async def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> Answer:
        """GET an API path (``/products/1``)."""
        return await self.request("GET", self.api(path), headers=headers)

    async def post(
        self, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """POST JSON (or nothing) to an API path."""
        return await self.request("POST", self.api(path), body, headers=headers)

    async def fetch(self, url: str) -> Answer:
        """GET any absolute URL: a sample photo, a compressed image (API headers if the API's)."""
        return await self.request("GET", url)

    def curl(self, path: str) -> str:
        """The shell command that makes the demo's GET of ``path``, exactly as the demo does."""
        words = ["curl", "-s"]
        for name, value in self.headers.items():
            words += ["-H", f"{name}: {value}"]
        return shlex.join([*words, self.api(path)])
