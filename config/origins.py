"""Image source origins a deployment opens to the SSRF guard (IMAGE_ALLOWED_SOURCE_ORIGINS),
and the start-up line saying what is opened."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from config.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class SourceOrigin:
    """An image source origin the SSRF guard may open: scheme, IP address and port, exactly.

    ``host`` is the address in canonical text (``127.0.0.1``, ``::1``), without brackets.
    """

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_source_origin(text: str) -> SourceOrigin:
    """``scheme://ip:port`` (http or https; port explicit or the scheme's default), normalised.

    Only IP literals: the guard compares the address actually connected with the origin's, and
    a name's addresses are only known once resolved (and may change after start-up), so a name
    would either need DNS at start-up or open whatever the name points at later.
    """
    raw = text.strip()
    try:
        parts = urlsplit(raw)
    except ValueError:
        raise ValueError(f"origin {raw!r}: is not a URL") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"origin {raw!r}: port must be a number between 1 and 65535") from None
    if parts.scheme not in _DEFAULT_PORTS or not raw.lower().startswith(f"{parts.scheme}://"):
        raise ValueError(f"origin {raw!r}: must be scheme://host:port with scheme http or https")
    if "@" in parts.netloc:
        raise ValueError(f"origin {raw!r}: must not hold a user name or password")
    if parts.path not in ("", "/"):
        raise ValueError(f"origin {raw!r}: must not have a path (an origin is scheme://host:port)")
    if "?" in raw or "#" in raw:
        raise ValueError(f"origin {raw!r}: must not have a query or fragment")
    if port == 0:
        raise ValueError(f"origin {raw!r}: port must be a number between 1 and 65535")
    if not parts.hostname:
        raise ValueError(f"origin {raw!r}: must name a host")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        raise ValueError(
            f"origin {raw!r}: host must be an IP address such as 127.0.0.1 or [::1], not a name"
        ) from None
    for kind, never in (
        ("an unspecified", address.is_unspecified),
        ("a multicast", address.is_multicast),
        ("a link-local", address.is_link_local),
    ):
        if never:
            raise ValueError(f"origin {raw!r}: {kind} address is never an image source")
    return SourceOrigin(parts.scheme, str(address), port or _DEFAULT_PORTS[parts.scheme])


def parse_source_origins(raw: str) -> tuple[SourceOrigin, ...]:
    """A comma-separated list of origins, normalised, duplicates dropped; empty means none."""
    origins: list[SourceOrigin] = []
    for item in raw.split(","):
        if item.strip():
            origin = parse_source_origin(item)
            if origin not in origins:
                origins.append(origin)
    return tuple(origins)


def source_origins_setting(raw: str) -> str:
    return ",".join(str(origin) for origin in parse_source_origins(raw))


def sources_opened_event(settings: Settings) -> tuple[int, str, dict[str, Any]]:
    """The start-up log line (level, event, fields) saying which normally refused image sources
    these settings open: WARNING when any is, INFO when the guard is fully closed."""
    fields: dict[str, Any] = {
        "allowed_source_origins": [str(o) for o in settings.allowed_source_origins],
        "allow_loopback_sources": settings.image_allow_loopback_sources,
        "allow_private_sources": settings.image_allow_private_sources,
    }
    opened = any(fields.values())
    return (logging.WARNING if opened else logging.INFO), "ssrf.sources_opened", fields


def log_sources_opened(logger: logging.Logger, settings: Settings) -> None:
    """Logs :func:`sources_opened_event`: the worker does at start-up, and so does the API."""
    level, event, fields = sources_opened_event(settings)
    logger.log(level, event, extra=fields)


def log_webhook_urls_opened(logger: logging.Logger, settings: Settings) -> None:
    """The start-up line saying which normally refused webhook URLs these settings open:
    WARNING when any is (development switches), INFO otherwise. The API (registration) and the
    dispatcher (delivery) both log it."""
    fields = {
        "allow_loopback_urls": settings.webhook_allow_loopback_urls,
        "allow_private_urls": settings.webhook_allow_private_urls,
    }
    level = logging.WARNING if any(fields.values()) else logging.INFO
    logger.log(level, "ssrf.webhook_urls_opened", extra=fields)
