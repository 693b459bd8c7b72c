"""Sending one delivery: a POST to a user-given URL under the SSRF rules, on the address
actually connected (catalogue.guarded_net), within WEBHOOK_TIMEOUT_SECONDS, redirects not
followed. The outcome is data; nothing here raises for what the endpoint does."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from catalogue.guarded_net import BlockedAddress, GuardedResolver, guarded_socket_factory
from catalogue.ssrf import AddressPolicy, check_url_scheme_and_host
from catalogue.webhooks import url_policy
from config import Settings

MAX_ERROR_LENGTH = 300


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: float


def create_session(settings: Settings) -> aiohttp.ClientSession:
    policy = url_policy(settings)
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy),
        socket_factory=guarded_socket_factory(policy),
        limit=settings.webhook_concurrency,
        ttl_dns_cache=60,
    )
    timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,  # never route user URLs through an environment proxy
        auto_decompress=False,  # the answer's body is never read
    )


class Sender:
    def __init__(self, session: aiohttp.ClientSession, policy: AddressPolicy, timeout_s: float):
        self.session = session
        self.policy = policy
        self.timeout_s = timeout_s

    async def send(self, url: str, headers: dict[str, str], body: str) -> Outcome:
        started = time.perf_counter()

        def outcome(status: int | None, error: str | None) -> Outcome:
            delivered = status is not None and 200 <= status < 300
            ms = (time.perf_counter() - started) * 1000
            return Outcome(delivered, status, error and error[:MAX_ERROR_LENGTH], ms)

        # The URL's text first (a literal address is judged here: aiohttp never resolves one);
        # a name's addresses are judged by the resolver and the socket factory.
        if reason := check_url_scheme_and_host(url, self.policy):
            return outcome(None, f"blocked: {reason}")
        try:
            async with self.session.post(
                URL(url, encoded=True), data=body.encode(), headers=headers, allow_redirects=False
            ) as response:
                status = response.status
        except BlockedAddress as exc:
            return outcome(None, f"blocked: {exc}")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                return outcome(None, f"blocked: {exc.os_error}")
            return outcome(None, f"connect: {exc.os_error or exc}")
        except TimeoutError:
            return outcome(None, f"timeout: no answer within {self.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return outcome(None, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return outcome(status, None)
        if 300 <= status < 400:
            return outcome(status, f"HTTP {status}: redirects are not followed")
        return outcome(status, f"HTTP {status}")
