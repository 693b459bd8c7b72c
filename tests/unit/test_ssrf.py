"""catalogue.ssrf: which addresses and URLs the downloader may reach. Pure: no sockets."""

from __future__ import annotations

import ipaddress

import pytest

from catalogue.ssrf import AddressPolicy, blocked_reason, check_url_scheme_and_host

STRICT = AddressPolicy()
LOOPBACK_OK = AddressPolicy(allow_loopback=True)
PRIVATE_OK = AddressPolicy(allow_private=True)
BOTH_OK = AddressPolicy(allow_loopback=True, allow_private=True)
ALL_POLICIES = [
    pytest.param(STRICT, id="strict"),
    pytest.param(LOOPBACK_OK, id="allow-loopback"),
    pytest.param(PRIVATE_OK, id="allow-private"),
    pytest.param(BOTH_OK, id="allow-both"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "151.101.1.69",
    "9.255.255.255",  # just below 10/8
    "11.0.0.0",  # just above 10/8
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.0",  # just above 100.64/10
    "126.255.255.255",  # just below 127/8
    "128.0.0.0",  # just above 127/8
    "169.253.255.255",  # just below 169.254/16
    "169.255.0.0",  # just above 169.254/16
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above 172.16/12
    "192.0.1.255",  # between 192.0.0/24 and 192.0.2/24
    "192.167.255.255",  # just below 192.168/16
    "192.169.0.0",  # just above 192.168/16
    "198.17.255.255",  # just below 198.18/15
    "198.20.0.0",  # just above 198.18/15
    "223.255.255.255",  # just below multicast
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "2c0f:fb50:4003::1",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "::ffff:808:808",  # the same, in hex
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:200::1",  # just past 2001::/23
]

LOOPBACK = [
    "127.0.0.1",
    "127.0.0.2",
    "127.1.2.3",
    "127.255.255.255",
    "::1",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
]

PRIVATE = [
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.0.1", "private"),
    ("192.168.255.255", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("100.127.255.255", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:192.168.1.1", "private"),
    ("::ffff:ac10:1", "private"),  # 172.16.0.1
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("64:ff9b::c0a8:101", "private"),  # NAT64 of 192.168.1.1
    ("64:ff9b:1::a00:1", "private"),  # local-use NAT64 prefix
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("fc00::1", "unique_local"),
    ("fd12:3456:789a::1", "unique_local"),
    ("fd00::1", "unique_local"),
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique_local"),
]

NEVER = [
    # cloud metadata, whatever the policy
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),  # inside 100.64/10, so allow_private must not open it
    ("fd00:ec2::254", "metadata"),  # inside fc00::/7, likewise
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:a9fe:a9fe", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2002:a9fe:a9fe::", "metadata"),
    ("::ffff:100.100.100.200", "metadata"),
    # link-local
    ("169.254.0.1", "link_local"),
    ("169.254.255.255", "link_local"),
    ("::ffff:169.254.1.1", "link_local"),
    ("fe80::1", "link_local"),
    ("fe80::1%eth0", "link_local"),
    ("fe80::a00:27ff:fe4e:66a1", "link_local"),
    ("febf:ffff::1", "link_local"),
    # unspecified
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("64:ff9b::", "unspecified"),
    # multicast and broadcast
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("::ffff:224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("ff05::1:3", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("::ffff:255.255.255.255", "broadcast"),
    # reserved, documentation, benchmarking, protocol assignments
    ("0.1.2.3", "reserved"),
    ("0.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("250.1.2.3", "reserved"),
    ("255.255.255.254", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.0.0.170", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.19.255.255", "reserved"),
    ("192.88.99.1", "reserved"),
    ("::ffff:192.0.2.1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("2001:db8:ffff::1", "reserved"),
    ("3fff::1", "reserved"),
    ("100::1", "reserved"),
    ("2001:2::1", "reserved"),  # benchmarking
    ("2001:10::1", "reserved"),  # ORCHID
    ("2001:20::1", "reserved"),  # ORCHIDv2
    ("5f00::1", "reserved"),
    ("fec0::1", "reserved"),  # deprecated site-local
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible
    ("::8.8.8.8", "reserved"),
    ("::2", "reserved"),
    ("1::1", "reserved"),  # outside 2000::/3
    ("4000::1", "reserved"),
    ("e000::1", "reserved"),
    # Teredo, whatever it embeds (client part obfuscated: bits inverted)
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "reserved"),  # client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "reserved"),  # client 8.8.8.8
]

INVALID = [
    "",
    "localhost",
    "example.com",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "010.0.0.1",
    "1.2.3.4.5",
    "256.0.0.1",
    " 8.8.8.8",
    "8.8.8.8/32",
    "::ffff:1.2.3",
    "fe80::1%",
    "[::1]",
]


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("address", PUBLIC)
def test_public_address_is_allowed_under_every_policy(address, policy):
    assert blocked_reason(address, policy) is None


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_is_blocked_by_default(address):
    assert blocked_reason(address, STRICT) == "loopback"
    assert blocked_reason(address) == "loopback"


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_is_blocked_when_only_private_is_allowed(address):
    assert blocked_reason(address, PRIVATE_OK) == "loopback"


@pytest.mark.parametrize("policy", [LOOPBACK_OK, BOTH_OK])
@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_is_allowed_by_allow_loopback(address, policy):
    assert blocked_reason(address, policy) is None


@pytest.mark.parametrize(("address", "reason"), PRIVATE)
def test_private_is_blocked_by_default(address, reason):
    assert blocked_reason(address, STRICT) == reason


@pytest.mark.parametrize(("address", "reason"), PRIVATE)
def test_private_is_blocked_when_only_loopback_is_allowed(address, reason):
    assert blocked_reason(address, LOOPBACK_OK) == reason


@pytest.mark.parametrize("policy", [PRIVATE_OK, BOTH_OK])
@pytest.mark.parametrize(("address", "reason"), PRIVATE)
def test_private_is_allowed_by_allow_private(address, reason, policy):
    assert blocked_reason(address, policy) is None


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize(("address", "reason"), NEVER)
def test_metadata_link_local_multicast_and_reserved_are_blocked_under_every_policy(
    address, reason, policy
):
    assert blocked_reason(address, policy) == reason


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("address", INVALID)
def test_string_that_is_not_an_ip_address_is_blocked_as_invalid(address, policy):
    assert blocked_reason(address, policy) == "invalid"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (ipaddress.IPv4Address("8.8.8.8"), None),
        (ipaddress.IPv4Address("127.0.0.1"), "loopback"),
        (ipaddress.IPv4Address("169.254.169.254"), "metadata"),
        (ipaddress.IPv6Address("::ffff:10.1.2.3"), "private"),
        (ipaddress.IPv6Address("fe80::1%eth0"), "link_local"),
        (ipaddress.IPv6Address("2606:4700:4700::1111"), None),
        (ipaddress.ip_address("fd00:ec2::254"), "metadata"),
    ],
)
def test_accepts_ipaddress_objects(address, reason):
    assert blocked_reason(address, STRICT) == reason


def test_policy_defaults_to_strict():
    assert AddressPolicy() == AddressPolicy(allow_loopback=False, allow_private=False)


def test_policy_is_immutable():
    with pytest.raises(AttributeError):
        STRICT.allow_private = True  # type: ignore[misc]


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.jpg",
        "https://cdn.example.com:8443/img/x.png?w=100&sig=abc#frag",
        "HTTPS://Example.COM/Photo.JPG",
        "http://example.com./trailing-dot",
        "https://images-cdn_1.example.co.uk/p",
        "https://bücher.example/cover.jpg",
        "https://xn--bcher-kva.example/cover.jpg",
        "http://8.8.8.8/image.jpg",
        "http://[2606:4700:4700::1111]:8080/image.jpg",
        "https://1example.com/",
        "https://123.example/",
    ],
)
def test_ordinary_http_and_https_urls_pass(url):
    assert check_url_scheme_and_host(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.jpg", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme"),
        ("dict://127.0.0.1:11211/stat", "scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("ws://example.com/socket", "scheme"),
        ("//example.com/a.jpg", "scheme"),
        ("example.com/a.jpg", "scheme"),
        ("", "scheme"),
        ("http://user:secret@example.com/a.jpg", "userinfo"),
        ("http://user@example.com/a.jpg", "userinfo"),
        ("http://:secret@example.com/a.jpg", "userinfo"),
        ("http://example.com@127.0.0.1/a.jpg", "userinfo"),
        ("https://127.0.0.1%2f@example.com/", "userinfo"),
        ("http:///a.jpg", "no_host"),
        ("http://example.com:99999/", "invalid_url"),
        ("http://example.com\\@127.0.0.1/", "invalid_url"),
        ("http://%31%32%37.0.0.1/", "invalid_host"),
        ("http://exa mple.com/", "invalid_host"),
        ("http://./", "invalid_host"),
        ("http://127.1/", "numeric_host"),
        ("http://2130706433/", "numeric_host"),
        ("http://0x7f000001/", "numeric_host"),
        ("http://0x7f.0.0.1/", "numeric_host"),
        ("http://0177.0.0.1/", "numeric_host"),
        ("http://017700000001/", "numeric_host"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://127.0.0.1/", "loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://10.0.0.5/a.jpg", "private"),
        ("http://[fd12::1]/a.jpg", "unique_local"),
        ("http://[fe80::1%25eth0]/", "link_local"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
def test_url_is_rejected_with_reason(url, reason):
    assert check_url_scheme_and_host(url) == reason


@pytest.mark.parametrize(
    ("url", "policy", "reason"),
    [
        ("http://127.0.0.1:9000/bucket/a.jpg", LOOPBACK_OK, None),
        ("http://127.0.0.1:9000/bucket/a.jpg", PRIVATE_OK, "loopback"),
        ("http://10.0.0.5/a.jpg", PRIVATE_OK, None),
        ("http://10.0.0.5/a.jpg", LOOPBACK_OK, "private"),
        ("http://169.254.169.254/", BOTH_OK, "metadata"),
        ("http://user@127.0.0.1/", BOTH_OK, "userinfo"),
        ("http://127.1/", BOTH_OK, "numeric_host"),
    ],
)
def test_url_literal_address_follows_the_policy(url, policy, reason):
    assert check_url_scheme_and_host(url, policy) == reason
