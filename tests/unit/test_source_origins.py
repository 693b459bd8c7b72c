"""IMAGE_ALLOWED_SOURCE_ORIGINS: exactly the listed origins open, nothing next to them.

The classification is tested as pure functions (URL text, the address and port dialled, the
resolver's answer); the downloader is then run against two image servers on 127.0.0.1, one of
them the allowed origin. No traffic leaves loopback: refused addresses are never connected to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from catalogue.guarded_net import BlockedAddress, GuardedResolver, guarded_socket_factory
from catalogue.ssrf import (
    AddressPolicy,
    Origin,
    blocked_endpoint_reason,
    check_url_scheme_and_host,
)
from compressor.download import Downloader, create_session, policy_from
from compressor.errors import ImageFailure
from config import Settings, load_settings
from testkit import imagegen

SAMPLE = Origin("http", ipaddress.ip_address("127.0.0.1"), 8090)
POLICY = AddressPolicy(allowed_origins=frozenset({SAMPLE}))


def origin(text: str) -> Origin:
    scheme, rest = text.split("://")
    host, _, port = rest.rpartition(":")
    return Origin(scheme, ipaddress.ip_address(host.strip("[]")), int(port))


# -- the URL's text: scheme, literal host and port must be an allowed origin -----------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("http://127.0.0.1:8090/samples/lamp.jpg", None, id="the-sample-origin"),
        pytest.param("http://127.0.0.1:8090", None, id="the-origin-itself"),
        pytest.param("http://127.0.0.1:8090/a.jpg?x=1#f", None, id="query-and-fragment"),
        pytest.param("http://127.0.0.1:8091/a.jpg", "loopback", id="same-host-other-port"),
        pytest.param("http://127.0.0.1/a.jpg", "loopback", id="same-host-default-port"),
        pytest.param("https://127.0.0.1:8090/a.jpg", "loopback", id="same-host-port-https"),
        pytest.param("http://127.0.0.2:8090/a.jpg", "loopback", id="other-loopback-address"),
        pytest.param("http://[::1]:8090/a.jpg", "loopback", id="ipv6-loopback-same-port"),
        pytest.param("http://[::ffff:127.0.0.1]:8090/", "loopback", id="ipv4-mapped-spelling"),
        pytest.param("http://10.0.0.5:8090/a.jpg", "private", id="private-same-port"),
        pytest.param("http://user@127.0.0.1:8090/", "userinfo", id="userinfo"),
        pytest.param("http://127.1:8090/", "numeric_host", id="legacy-numeric-spelling"),
        pytest.param("http://2130706433:8090/", "numeric_host", id="integer-spelling"),
    ],
)
def test_url_must_name_an_allowed_origin_exactly(url: str, reason: str | None) -> None:
    assert check_url_scheme_and_host(url, POLICY) == reason


def test_default_port_of_an_origin_is_the_schemes() -> None:
    policy = AddressPolicy(allowed_origins=frozenset({origin("http://127.0.0.1:80")}))
    assert check_url_scheme_and_host("http://127.0.0.1/a.jpg", policy) is None
    assert check_url_scheme_and_host("http://127.0.0.1:80/a.jpg", policy) is None
    assert check_url_scheme_and_host("https://127.0.0.1/a.jpg", policy) == "loopback"


def test_private_and_unique_local_origins_open_only_themselves() -> None:
    policy = AddressPolicy(
        allowed_origins=frozenset({origin("http://10.0.0.5:8080"), origin("http://[fd12::1]:80")})
    )
    assert check_url_scheme_and_host("http://10.0.0.5:8080/a.jpg", policy) is None
    assert check_url_scheme_and_host("http://10.0.0.6:8080/a.jpg", policy) == "private"
    assert check_url_scheme_and_host("http://[fd12::1]/a.jpg", policy) is None
    assert check_url_scheme_and_host("http://[fd12::2]/a.jpg", policy) == "unique_local"
    assert blocked_endpoint_reason("10.0.0.5", 8080, policy) is None
    assert blocked_endpoint_reason("10.0.0.5", 8081, policy) == "private"
    assert blocked_endpoint_reason("fd12::1", 80, policy) is None


def test_without_origins_loopback_stays_closed() -> None:
    assert check_url_scheme_and_host("http://127.0.0.1:8090/a.jpg") == "loopback"
    assert blocked_endpoint_reason("127.0.0.1", 8090) == "loopback"


@pytest.mark.parametrize(
    ("listed", "url", "reason"),
    [
        ("http://169.254.169.254:80", "http://169.254.169.254/latest/", "metadata"),
        ("http://100.100.100.200:80", "http://100.100.100.200/", "metadata"),
        ("http://[fd00:ec2::254]:80", "http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.10.10:80", "http://169.254.10.10/", "link_local"),
        ("http://[fe80::1]:80", "http://[fe80::1]/", "link_local"),
        ("http://224.0.0.1:80", "http://224.0.0.1/", "multicast"),
        ("http://198.18.0.1:80", "http://198.18.0.1/", "reserved"),
    ],
)
def test_an_origin_never_opens_metadata_link_local_or_reserved(
    listed: str, url: str, reason: str
) -> None:
    # Settings refuse to list most of these; the guard refuses them whatever it is handed.
    listed_origin = origin(listed)
    policy = AddressPolicy(
        allow_loopback=True, allow_private=True, allowed_origins=frozenset({listed_origin})
    )
    assert check_url_scheme_and_host(url, policy) == reason
    assert blocked_endpoint_reason(listed_origin.address, listed_origin.port, policy) == reason


# -- the address and port actually dialled ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "port", "reason"),
    [
        ("127.0.0.1", 8090, None),
        ("127.0.0.1", 8091, "loopback"),
        ("127.0.0.1", 80, "loopback"),
        ("127.0.0.2", 8090, "loopback"),
        ("::1", 8090, "loopback"),
        ("::ffff:127.0.0.1", 8090, "loopback"),
        ("10.0.0.5", 8090, "private"),
        ("not an address", 8090, "invalid"),
    ],
)
def test_endpoint_must_be_an_allowed_origins_address_and_port(
    address: str, port: int, reason: str | None
) -> None:
    assert blocked_endpoint_reason(address, port, POLICY) == reason


def test_socket_factory_refuses_every_endpoint_but_the_origins() -> None:
    factory = guarded_socket_factory(POLICY)
    tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    with factory((socket.AF_INET, *tcp, ("127.0.0.1", 8090))) as sock:  # created, not connected
        assert sock.family == socket.AF_INET
    for family, address in [
        (socket.AF_INET, ("127.0.0.1", 8091)),
        (socket.AF_INET, ("127.0.0.2", 8090)),
        (socket.AF_INET6, ("::1", 8090, 0, 0)),
    ]:
        with pytest.raises(BlockedAddress, match="loopback"):
            factory((family, *tcp, address))


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses: DNS without DNS."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_a_name_resolving_to_the_origins_address_is_refused() -> None:
    # An origin is an address: a name (localhost, or a public name pointed at 127.0.0.1) never
    # matches it, so the resolver refuses the loopback answer even on the origin's port.
    resolver = GuardedResolver(POLICY, FixedResolver("127.0.0.1"))
    with pytest.raises(BlockedAddress, match="only to blocked addresses"):
        await resolver.resolve("localhost", 8090)
    mixed = GuardedResolver(POLICY, FixedResolver("127.0.0.1", "93.184.215.14"))
    assert [r["host"] for r in await mixed.resolve("images.example", 8090)] == ["93.184.215.14"]


# -- settings to policy ----------------------------------------------------------------------------


def test_policy_from_settings_opens_exactly_the_listed_origins() -> None:
    settings = load_settings(
        {"IMAGE_ALLOWED_SOURCE_ORIGINS": "http://127.0.0.1:8090,https://[::1]"}, dotenv=None
    )
    assert policy_from(settings) == AddressPolicy(
        allowed_origins=frozenset({SAMPLE, origin("https://[::1]:443")})
    )
    assert policy_from(Settings()) == AddressPolicy()


# -- the downloader against two loopback servers ---------------------------------------------------


class Site:
    """An image server on 127.0.0.1 that counts requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.redirects: dict[str, str] = {}
        self.origin = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        if request.path in self.redirects:
            return web.Response(status=302, headers={"Location": self.redirects[request.path]})
        return web.Response(body=imagegen.tiny_png(), content_type="image/png")


@pytest.fixture
async def sites(aiohttp_server):
    made = []
    for _ in range(2):
        site = Site()
        app = web.Application()
        app.router.add_get("/{tail:.*}", site.handle)
        server = await aiohttp_server(app, host="127.0.0.1")
        site.origin = f"http://127.0.0.1:{server.port}"
        made.append(site)
    return made


@pytest.fixture
async def fetcher(sites):
    allowed, _other = sites
    settings = load_settings({"IMAGE_ALLOWED_SOURCE_ORIGINS": allowed.origin}, dotenv=None)
    assert not settings.image_allow_loopback_sources
    session = create_session(settings, connections=4)
    yield Downloader(session, settings), session
    await session.close()


async def test_the_allowed_origin_is_fetched(sites, fetcher) -> None:
    allowed, _other = sites
    downloader, _session = fetcher
    downloaded = await downloader.fetch(f"{allowed.origin}/photo.png")
    assert downloaded.data == imagegen.tiny_png()
    assert allowed.hits["/photo.png"] == 1


async def test_same_host_on_another_port_is_refused_before_connecting(sites, fetcher) -> None:
    _allowed, other = sites
    downloader, _session = fetcher
    with pytest.raises(ImageFailure) as caught:
        await downloader.fetch(f"{other.origin}/photo.png")
    assert (caught.value.reason, caught.value.transient) == ("blocked_url", False)
    assert "loopback" in str(caught.value)
    assert sum(other.hits.values()) == 0


async def test_another_loopback_address_on_the_origins_port_is_refused(sites, fetcher) -> None:
    allowed, _other = sites
    downloader, _session = fetcher
    port = allowed.origin.rsplit(":", 1)[1]
    with pytest.raises(ImageFailure) as caught:
        await downloader.fetch(f"http://127.0.0.2:{port}/photo.png")
    assert (caught.value.reason, caught.value.transient) == ("blocked_url", False)
    assert sum(allowed.hits.values()) == 0  # nothing reached the port, on any address


async def test_a_redirect_from_the_origin_to_another_loopback_port_is_refused(
    sites, fetcher
) -> None:
    allowed, other = sites
    downloader, _session = fetcher
    allowed.redirects["/moved.png"] = f"{other.origin}/photo.png"
    with pytest.raises(ImageFailure) as caught:
        await downloader.fetch(f"{allowed.origin}/moved.png")
    assert (caught.value.reason, caught.value.transient) == ("blocked_url", False)
    assert allowed.hits["/moved.png"] == 1
    assert sum(other.hits.values()) == 0


async def test_a_redirect_within_the_origin_is_followed(sites, fetcher) -> None:
    allowed, _other = sites
    downloader, _session = fetcher
    allowed.redirects["/moved.png"] = "/photo.png"
    downloaded = await downloader.fetch(f"{allowed.origin}/moved.png")
    assert downloaded.url == f"{allowed.origin}/photo.png"


async def test_the_socket_layer_refuses_other_ports_without_the_url_check(sites, fetcher) -> None:
    # The session alone (no Downloader, so no check of the URL's text): the socket factory,
    # which sees the address and port dialled, still refuses everything but the origin.
    allowed, other = sites
    _downloader, session = fetcher
    async with session.get(f"{allowed.origin}/photo.png") as response:
        assert response.status == 200
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.get(f"{other.origin}/photo.png"):
            pass
    assert isinstance(caught.value.os_error, BlockedAddress)
    assert sum(other.hits.values()) == 0
