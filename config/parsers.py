"""Parsers of setting values: raw string -> value, raising ValueError with a short reason
(the loader adds the variable's name)."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from config.rates import Rate, parse_rate


def text(raw: str) -> str:
    return raw


def nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("must be an integer") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if not low <= value <= high:  # also rejects NaN
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def ascending_ints(low: int, high: int) -> Callable[[str], tuple[int, ...]]:
    """A comma-separated list of integers in low..high, at least one, ascending, no repeats."""
    one = int_between(low, high)

    def parse(raw: str) -> tuple[int, ...]:
        items = [item for item in raw.split(",") if item.strip()]
        if not items:
            raise ValueError("must list at least one integer")
        values = tuple(one(item) for item in items)
        if list(values) != sorted(set(values)):
            raise ValueError("must be ascending, without repeats")
        return values

    return parse


def choices(*allowed: str) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of some of `allowed`, at least one, each once, in the given order."""
    one = choice(*allowed)

    def parse(raw: str) -> tuple[str, ...]:
        values = tuple(one(item) for item in raw.split(",") if item.strip())
        if not values:
            raise ValueError(f"must list at least one of {', '.join(allowed)}")
        if len(set(values)) != len(values):
            raise ValueError("must name each format once")
        return values

    return parse


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def durations(low_s: float, high_s: float) -> Callable[[str], tuple[float, ...]]:
    """A comma-separated list of durations (`30s`, `5m`, `2h`, `1d`; a bare number is seconds),
    at least one, each in low_s..high_s seconds."""

    def one(item: str) -> float:
        item = item.strip().lower()
        scale = _DURATION_UNITS.get(item[-1:])
        number = item[:-1] if scale is not None else item
        try:
            value = float(number) * (scale or 1)
        except ValueError:
            raise ValueError(f"{item!r} is not a duration like 30s, 5m, 2h or 1d") from None
        if not low_s <= value <= high_s:  # also rejects NaN
            raise ValueError(f"{item!r} must be between {low_s:g} s and {high_s:g} s")
        return value

    def parse(raw: str) -> tuple[float, ...]:
        items = [item for item in raw.split(",") if item.strip()]
        if not items:
            raise ValueError("must list at least one duration")
        return tuple(one(item) for item in items)

    return parse


def url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ValueError(f"must be a URL with scheme {' or '.join(schemes)}")
        if not parts.hostname:
            raise ValueError("must name a host")
        return value

    return parse


def optional_url(raw: str) -> str:
    return url("http", "https")(raw) if raw.strip() else ""


_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def bootstrap_servers(raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise ValueError("must be a comma-separated list of host:port")
    return ",".join(servers)


def optional_host_ports(raw: str) -> str:
    """A comma-separated list of host:port (ports 1-65535), or nothing."""
    items = [s.strip() for s in raw.split(",") if s.strip()]
    for item in items:
        if not _HOST_PORT.match(item) or not 1 <= int(item.rsplit(":", 1)[1]) <= 65535:
            raise ValueError(f"{item!r} is not host:port (a comma-separated list of them)")
    return ",".join(items)


def topic(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9._\-]{1,249}", value):
        raise ValueError("must be 1-249 characters of letters, digits, '.', '_' or '-'")
    return value


def storage_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    parts = urlsplit(value)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("s3:// URL must name a bucket (s3://bucket/prefix)")
        return value
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file:// URL must hold an absolute path (file:///abs/path)")
        if not parts.path.startswith("/"):
            raise ValueError("file:// URL must hold an absolute path")
        return value
    if parts.scheme and len(parts.scheme) > 1:  # one letter would be a Windows drive
        raise ValueError("must be file:///abs/path, a relative path or s3://bucket/prefix")
    return value


def rate(raw: str) -> Rate:
    return parse_rate(raw)


# An admin key must be as hard to guess as the user keys (256 random bits): at least 32
# characters, not repetitive, and not shaped like a user key (catk_…), which it would shadow.
_MIN_ADMIN_KEY_LENGTH = 32
_MIN_ADMIN_KEY_DISTINCT = 16


def admin_keys(raw: str) -> str:
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for number, key in enumerate(keys, start=1):
        _check_random_key(key, f"key {number}")
        if key.startswith("catk_"):
            raise ValueError(f"key {number} must not start with catk_ (the user keys' prefix)")
    return ",".join(keys)


def signing_key(raw: str) -> str:
    """Empty (webhooks off), or a key as hard to guess as an admin key."""
    key = raw.strip()
    if key:
        _check_random_key(key, "the key")
    return key


def _check_random_key(key: str, name: str) -> None:
    if len(key) < _MIN_ADMIN_KEY_LENGTH:
        raise ValueError(
            f"{name} is shorter than {_MIN_ADMIN_KEY_LENGTH} characters; make one "
            "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise ValueError(f"{name} must be printable ASCII without spaces")
    if len(set(key)) < _MIN_ADMIN_KEY_DISTINCT:
        raise ValueError(f"{name} is too repetitive to be random")
