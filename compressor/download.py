"""Downloading source images from user-given URLs, defended against SSRF and abuse.

- The address actually connected must pass the SSRF policy: the connector's socket factory
  refuses every blocked address it is asked to dial (IP literals included, which aiohttp never
  passes to a resolver); the resolver drops blocked addresses first, so a name with one good and
  one bad address still works; URL text (scheme, credentials, odd numeric hosts) is checked before
  the request. Every redirect hop goes through the same checks; at most MAX_REDIRECTS of them.
- An allowed origin (IMAGE_ALLOWED_SOURCE_ORIGINS) opens its blocked-range address only when the
  URL names it exactly (scheme, IP literal, port) and the socket dials that address and port;
  names resolved by the resolver never match an origin.
- Size is enforced while streaming (and from Content-Length up front), time by a total timeout.
- The first bytes must be an image by their magic number, whatever the Content-Type says.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from catalogue.guarded_net import BlockedAddress, GuardedResolver, guarded_socket_factory
from catalogue.ssrf import (
    AddressPolicy,
    Origin,
    check_url_scheme_and_host,
)
from compressor.errors import http_status_failure, permanent
from compressor.sniff import SNIFF_BYTES, sniff_image_type
from config import Settings
from config.origins import log_sources_opened

log = logging.getLogger("compressor")

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
USER_AGENT = "product-catalogue-image-worker/1.0"


@dataclass(frozen=True, slots=True)
class Downloaded:
    data: bytes
    url: str  # after redirects
    ms: float


def policy_from(settings: Settings) -> AddressPolicy:
    return AddressPolicy(
        allow_loopback=settings.image_allow_loopback_sources,
        allow_private=settings.image_allow_private_sources,
        allowed_origins=frozenset(
            Origin(o.scheme, ipaddress.ip_address(o.host), o.port)
            for o in settings.allowed_source_origins
        ),
    )


def create_session(settings: Settings, *, connections: int) -> aiohttp.ClientSession:
    """The downloads' session; logs once which normally refused sources the settings open."""
    policy = policy_from(settings)
    log_sources_opened(log, settings)
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy),
        socket_factory=guarded_socket_factory(policy),
        limit=connections,
        ttl_dns_cache=60,
    )
    timeout = aiohttp.ClientTimeout(
        total=settings.image_download_timeout_seconds,
        sock_connect=min(5.0, settings.image_download_timeout_seconds),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,  # never route user URLs through an environment proxy
        headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
        auto_decompress=False,  # a gzip bomb must not inflate past the size limit
    )


class Downloader:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self.session = session
        self.policy = policy_from(settings)
        self.max_bytes = settings.image_max_download_bytes

    async def fetch(self, url: str) -> Downloaded:
        started = time.perf_counter()
        for _hop in range(MAX_REDIRECTS + 1):
            if reason := check_url_scheme_and_host(url, self.policy):
                raise permanent("blocked_url", f"{reason}: {url[:200]}")
            try:
                async with self.session.get(
                    URL(url, encoded=True), allow_redirects=False
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise permanent("bad_redirect", "redirect without Location")
                        try:
                            url = str(response.url.join(URL(location)))
                        except ValueError:  # e.g. "http://[::1": the server's fault, for good
                            raise permanent(
                                "bad_redirect", f"unparsable Location {location[:200]!r}"
                            ) from None
                        continue
                    if response.status != 200:
                        raise http_status_failure(response.status)
                    data = await self._read_body(response)
                    return Downloaded(data, url, (time.perf_counter() - started) * 1000)
            except BlockedAddress as exc:
                raise permanent("blocked_address", str(exc)) from None
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, BlockedAddress):
                    raise permanent("blocked_address", str(exc.os_error)) from None
                raise
        raise permanent("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise permanent(
                "too_large", f"Content-Length {response.content_length} > {self.max_bytes}"
            )
        if response.headers.get("Content-Encoding", "identity") not in ("identity", ""):
            raise permanent("not_an_image", "compressed transfer encoding of an image")
        chunks: list[bytes] = []
        size = 0
        sniffed = False
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                raise permanent("too_large", f"more than {self.max_bytes} bytes")
            if not sniffed and size >= SNIFF_BYTES:
                self._sniff(b"".join(chunks)[:SNIFF_BYTES])
                sniffed = True
        data = b"".join(chunks)
        if not sniffed:
            self._sniff(data)
        return data

    @staticmethod
    def _sniff(head: bytes) -> None:
        if sniff_image_type(head) is None:
            raise permanent("not_an_image", "content is not a known image format")
