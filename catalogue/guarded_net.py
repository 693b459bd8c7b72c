"""Outbound connections to user-given URLs (image sources, webhook endpoints), guarded on the
address actually dialled: a resolver that drops blocked addresses, and a socket factory that
refuses to create a socket for one (IP literals included, which aiohttp never resolves).

The rules themselves are catalogue.ssrf's pure functions; this is their I/O edge, shared by the
image downloader and the webhook dispatcher so both defend the same way.
"""

from __future__ import annotations

import socket

from aiohttp import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from catalogue.ssrf import AddressPolicy, blocked_endpoint_reason, blocked_reason


class BlockedAddress(OSError):
    """Raised inside the connector: every address of a host is blocked by the policy."""


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then keeps only the addresses the policy allows.

    aiohttp asks it about host names only (never IP literals), and a name never matches an
    allowed origin, so only the policy's broad switches apply here.
    """

    def __init__(self, policy: AddressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if blocked_reason(r["host"], self.policy) is None]
        if not allowed:
            reasons = sorted({blocked_reason(r["host"], self.policy) or "" for r in results})
            raise BlockedAddress(
                f"{host} resolves only to blocked addresses ({', '.join(reasons)})"
            )
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


def guarded_socket_factory(policy: AddressPolicy) -> SocketFactoryType:
    """Creates the socket for each address aiohttp is about to dial, refusing blocked ones.

    This sees the very address and port connected (after DNS, for IP literals too, on every
    redirect hop), so no resolver trick or rebinding can slip past it.
    """

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _canonname, sockaddr = addr_info
        if reason := blocked_endpoint_reason(sockaddr[0], sockaddr[1], policy):
            raise BlockedAddress(f"refusing to connect to a {reason} address")
        return socket.socket(family, kind, proto)

    return factory
