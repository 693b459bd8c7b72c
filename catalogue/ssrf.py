"""Address classification for the SSRF guard: may the downloader connect to this address?

Pure functions, no DNS and no I/O. The connector calls :func:`blocked_reason` on every address
a host name resolves to (not only the first), right before connecting, so a DNS answer cannot
point an image URL at the metadata service or an internal host.

An :class:`AddressPolicy` can open normally refused ranges: broadly (every loopback or every
private address, ``allow_loopback`` / ``allow_private``) or exactly, for a few
:class:`Origin` s (scheme, IP address and port). An origin opens its address only where both
sides agree: the URL's own scheme, literal host and port (:func:`check_url_scheme_and_host`) and
the address and port actually dialled (:func:`blocked_endpoint_reason`, which the socket factory
calls). Host names never match an origin, whatever they resolve to.

Deliberately written as explicit tables rather than ``ipaddress``'s ``is_private`` /
``is_global``: those changed meaning between Python patch releases (3.11.10, 3.12.4) and say
nothing about addresses embedded in IPv6 transition prefixes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

import yarl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Reasons. Only LOOPBACK, PRIVATE and UNIQUE_LOCAL can be opened by the policy.
LOOPBACK: Final = "loopback"
PRIVATE: Final = "private"
UNIQUE_LOCAL: Final = "unique_local"
LINK_LOCAL: Final = "link_local"
METADATA: Final = "metadata"
MULTICAST: Final = "multicast"
BROADCAST: Final = "broadcast"
UNSPECIFIED: Final = "unspecified"
RESERVED: Final = "reserved"
INVALID: Final = "invalid"


OPENABLE: Final = frozenset({LOOPBACK, PRIVATE, UNIQUE_LOCAL})
"""The reasons a policy may lift; every other one (metadata, link-local, ...) stays."""


@dataclass(frozen=True, slots=True)
class Origin:
    """``scheme://address:port``: one source the policy opens exactly, and nothing else.

    The host is an IP address, not a name: the check that matters compares the address actually
    dialled, and a name's addresses are only known once resolved.
    """

    scheme: str
    address: IPAddress
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which normally blocked addresses this deployment may reach.

    The two switches open whole ranges, for development and tests (an image server on localhost
    or in a compose network). ``allowed_origins`` opens single origins instead (the sample image
    server of ``make run``): a loopback, private or unique-local address is allowed for a URL
    whose scheme, literal host and port are one of them, and only on that port. Link-local and
    cloud metadata addresses stay blocked whatever the policy says.
    """

    allow_loopback: bool = False
    allow_private: bool = False
    allowed_origins: frozenset[Origin] = frozenset()

    def opens_endpoint(self, address: IPAddress, port: int) -> bool:
        """True if some allowed origin has this address and port (whatever its scheme)."""
        return any(o.address == address and o.port == port for o in self.allowed_origins)


DEFAULT_POLICY: Final = AddressPolicy()

_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

# Cloud instance metadata services. They sit inside ranges that are blocked anyway, but are
# checked first so that no policy switch (allow_private covers 100.64/10 and fc00::/7) can
# ever open them, and so that logs name the attack.
_METADATA: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity agent
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IPv6 instance metadata
        "fd00:ec2::23",  # AWS EKS pod identity agent over IPv6
    )
)

# First match wins, so more specific ranges come before the ones containing them.
_V4_RANGES: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_v4("0.0.0.0/32"), UNSPECIFIED),
    (_v4("0.0.0.0/8"), RESERVED),  # "this network"
    (_v4("127.0.0.0/8"), LOOPBACK),
    (_v4("10.0.0.0/8"), PRIVATE),
    (_v4("172.16.0.0/12"), PRIVATE),
    (_v4("192.168.0.0/16"), PRIVATE),
    (_v4("100.64.0.0/10"), PRIVATE),  # carrier-grade NAT: other customers of the provider
    (_v4("169.254.0.0/16"), LINK_LOCAL),
    (_v4("192.0.0.0/24"), RESERVED),  # IETF protocol assignments
    (_v4("192.0.2.0/24"), RESERVED),  # documentation TEST-NET-1
    (_v4("198.51.100.0/24"), RESERVED),  # documentation TEST-NET-2
    (_v4("203.0.113.0/24"), RESERVED),  # documentation TEST-NET-3
    (_v4("198.18.0.0/15"), RESERVED),  # benchmarking
    (_v4("192.88.99.0/24"), RESERVED),  # deprecated 6to4 relay anycast
    (_v4("224.0.0.0/4"), MULTICAST),
    (_v4("255.255.255.255/32"), BROADCAST),
    (_v4("240.0.0.0/4"), RESERVED),
)

# Prefixes whose address carries an IPv4 address in its last 32 bits; the connection ends up
# at (or is steered by) that IPv4 address, so it is judged as that address.
_V6_EMBEDDING_V4: Final = (
    _v6("::ffff:0:0/96"),  # IPv4-mapped
    _v6("64:ff9b::/96"),  # NAT64 well-known prefix
)

_V6_RANGES: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_v6("::/128"), UNSPECIFIED),
    (_v6("::1/128"), LOOPBACK),
    (_v6("::/96"), RESERVED),  # deprecated IPv4-compatible
    (_v6("64:ff9b:1::/48"), PRIVATE),  # local-use NAT64: translates into the local network
    (_v6("100::/64"), RESERVED),  # discard-only
    (_v6("2001:db8::/32"), RESERVED),  # documentation
    (_v6("2001::/23"), RESERVED),  # IETF protocol assignments (benchmarking, ORCHID, ...)
    (_v6("3fff::/20"), RESERVED),  # documentation (RFC 9637)
    (_v6("5f00::/16"), RESERVED),  # SRv6 segment identifiers
    (_v6("fc00::/7"), UNIQUE_LOCAL),
    (_v6("fe80::/10"), LINK_LOCAL),
    (_v6("fec0::/10"), RESERVED),  # deprecated site-local
    (_v6("ff00::/8"), MULTICAST),
)
_V6_GLOBAL_UNICAST: Final = _v6("2000::/3")


def _parse(address: str | IPAddress) -> IPAddress | None:
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # A zone ("fe80::1%eth0") says which interface, not which address; it must not
        # make the address compare unequal to the ranges below.
        address = ipaddress.IPv6Address(int(address))
    return address


def _classify_v4(address: ipaddress.IPv4Address) -> str | None:
    for network, reason in _V4_RANGES:
        if address in network:
            return reason
    return None


def _classify_v6(address: ipaddress.IPv6Address) -> str | None:
    for prefix in _V6_EMBEDDING_V4:
        if address in prefix:
            return _classify(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        return _classify(address.sixtofour)
    if address.teredo is not None:
        # The client part is an obfuscated IPv4 address behind a NAT; no image host is
        # reached through Teredo. Blocked whatever it embeds, so that no policy switch for
        # the embedded address opens it either.
        return RESERVED
    for network, reason in _V6_RANGES:
        if address in network:
            return reason
    # Outside 2000::/3 nothing is assigned for global unicast.
    return None if address in _V6_GLOBAL_UNICAST else RESERVED


def _classify(address: IPAddress) -> str | None:
    if address in _METADATA:
        return METADATA
    if isinstance(address, ipaddress.IPv4Address):
        return _classify_v4(address)
    return _classify_v6(address)


def blocked_reason(address: str | IPAddress, policy: AddressPolicy = DEFAULT_POLICY) -> str | None:
    """Return None if ``address`` may be connected to, else why not.

    Reasons: ``loopback``, ``private``, ``unique_local`` (the three the policy can allow),
    ``link_local``, ``metadata``, ``multicast``, ``broadcast``, ``unspecified``, ``reserved``,
    and ``invalid`` for a string that is not an IP address (fail closed). Addresses embedding
    an IPv4 address (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) get the
    reason of the embedded address; Teredo ``2001::/32`` is always ``reserved``.
    """
    parsed = _parse(address)
    if parsed is None:
        return INVALID
    reason = _classify(parsed)
    if reason == LOOPBACK and policy.allow_loopback:
        return None
    if reason in (PRIVATE, UNIQUE_LOCAL) and policy.allow_private:
        return None
    return reason


def blocked_endpoint_reason(
    address: str | IPAddress, port: int, policy: AddressPolicy = DEFAULT_POLICY
) -> str | None:
    """:func:`blocked_reason` for a connection about to be made to ``address`` on ``port``.

    Also allows a loopback, private or unique-local address when it is the address and port of
    one of the policy's allowed origins. This sees the address actually dialled, after DNS; the
    scheme and host of the URL are :func:`check_url_scheme_and_host`'s part.
    """
    parsed = _parse(address)
    if parsed is None:
        return INVALID
    reason = blocked_reason(parsed, policy)
    if reason in OPENABLE and policy.opens_endpoint(parsed, port):
        return None
    return reason


# What getaddrinfo would take as IPv4 in the legacy inet_aton forms: 127.1, 2130706433,
# 0x7f.0.0.1, 0177.0.0.1. Such a host is an IP address that does not look like one.
_LEGACY_NUMERIC_HOST: Final = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}")
# A DNS name after IDNA encoding (yarl does that). Anything else (percent escapes, spaces,
# brackets) is a host that some layer below might decode into something else.
_HOST_NAME: Final = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def check_url_scheme_and_host(url: str, policy: AddressPolicy = DEFAULT_POLICY) -> str | None:
    """Return None if ``url`` may be fetched as far as its text tells, else why not.

    Reasons: ``invalid_url``, ``scheme`` (only http and https), ``userinfo`` (credentials in
    the URL), ``no_host``, ``invalid_host`` (not a plain DNS name after IDNA encoding),
    ``numeric_host`` (legacy IPv4 spellings such as ``127.1`` or ``2130706433``), or the
    :func:`blocked_reason` of a literal IP address host, unless the URL's scheme, address and
    port (explicit or the scheme's default) are one of the policy's allowed origins. The literal
    check matters: aiohttp's connector does not pass IP literals to the resolver, so a
    resolver-level guard alone never sees ``http://169.254.169.254/``.

    Parsed with yarl, the parser aiohttp itself uses, so the check and the request cannot
    disagree about which host is meant.
    """
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        return "invalid_url"
    if parsed.scheme not in ("http", "https"):
        return "scheme"
    if parsed.raw_user is not None or parsed.raw_password is not None:
        return "userinfo"
    host = parsed.raw_host
    if not host:
        return "no_host"
    host = host.rstrip(".").lower()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        reason = blocked_reason(literal, policy)
        if reason in OPENABLE and parsed.port is not None:
            address = _parse(literal)
            if address is not None and Origin(parsed.scheme, address, parsed.port) in (
                policy.allowed_origins
            ):
                return None
        return reason
    if _LEGACY_NUMERIC_HOST.fullmatch(host):
        return "numeric_host"
    if not _HOST_NAME.fullmatch(host):
        return "invalid_host"
    return None
