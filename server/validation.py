"""Parsing and validation of request input: pure functions that raise ApiError with a precise
message naming the field, so handlers stay thin and every rule has a unit test.

Each rule that a regular expression can state is one here (the `*_PATTERN` constants), and the
OpenAPI document (server/openapi.py) publishes that very text, so what the document promises and
what the API accepts cannot drift apart. The patterns are read by two dialects, Python's `re`
here and ECMA-262 in JSON Schema, so they keep to what both read alike: anchored with ^ and $
(and matched here with fullmatch), whitespace spelled out rather than `\\s` (the dialects disagree
on what it is), no lookarounds.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from catalogue.ids import ID_DIGITS, MAX_ID
from server.errors import bad_request

MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 10_000
MAX_URL_LENGTH = 2048
MAX_EMAIL_LENGTH = 320
# NUMERIC(12, 2) holds up to 9 999 999 999.99; anything near that is a typo, not a price.
MAX_PRICE = Decimal("1000000000")
PRICE_STEP = Decimal("0.01")
MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 1, 200, 50
MAX_ID_LENGTH = 19  # catalogue.ids.ID_DIGITS: 1 to 19 digits, leading zeros allowed

_LIMIT = re.compile(r"[0-9]{1,6}")  # ASCII only: str.isdigit() also takes "²", which int() refuses
_PRICE_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")

# What str.strip() removes (the characters of str.isspace()), as a character class's body.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Controls (C0, DEL, C1) and whitespace: what a URL must hold percent-encoded, if at all.
_CONTROL_OR_SPACE = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# Required text (a username, a product name): no NUL (PostgreSQL text cannot hold one) and a
# character that is not whitespace. Lengths count what was sent; what is kept is stripped.
TEXT_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"
# Optional text (a description, the name filter): no NUL.
NO_NUL_PATTERN = r"^[^\x00]*$"
_EMAIL_PART = rf"[^@\x00{WHITESPACE}]+"
# something@something.something without whitespace inside (around it, it is stripped).
EMAIL_PATTERN = rf"^[{WHITESPACE}]*{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}[{WHITESPACE}]*$"


def _ipv6_address() -> str:
    """RFC 3986's IPv6address (section 3.2.2)."""
    h16 = "[0-9A-Fa-f]{1,4}"
    octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    ls32 = rf"(?:{h16}:{h16}|{octet}(?:\.{octet}){{3}})"

    def head(most: int) -> str:  # [ *most( h16 ":" ) h16 ]
        return f"(?:(?:{h16}:){{0,{most}}}{h16})?" if most else f"(?:{h16})?"

    forms = [
        f"(?:{h16}:){{6}}{ls32}",
        f"::(?:{h16}:){{5}}{ls32}",
        f"{head(0)}::(?:{h16}:){{4}}{ls32}",
        f"{head(1)}::(?:{h16}:){{3}}{ls32}",
        f"{head(2)}::(?:{h16}:){{2}}{ls32}",
        f"{head(3)}::{h16}:{ls32}",
        f"{head(4)}::{ls32}",
        f"{head(5)}::{h16}",
        f"{head(6)}::",
    ]
    return "(?:" + "|".join(forms) + ")"


# An http or https URL (any case) with a host: a name or IPv4 address, or an IPv6 address in
# brackets; user info and port are optional. No whitespace or control character anywhere: those
# must be percent-encoded. Whether the host exists or may be fetched is the worker's to find out.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    rf"(?:[^/?#@\[\]{_CONTROL_OR_SPACE}]*@)?"
    rf"(?:[^/?#@:\[\]{_CONTROL_OR_SPACE}]+|\[{_ipv6_address()}\])"
    r"(?::[0-9]*)?"
    rf"(?:[/?#][^{_CONTROL_OR_SPACE}]*)?$"
)

# A webhook endpoint: http or https, a host that is a DNS name (its last label not numeric), a
# dotted-quad IPv4 address or a bracketed IPv6 address, an optional port 1-65535, an optional
# path and query; no user info, no fragment, no whitespace or control characters. Stricter than
# an image URL, since it is checked in full at registration (catalogue.ssrf): what this admits,
# the SSRF rules judge only by its address (a literal one refused is a 400, in words).
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
WEBHOOK_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"(?:(?:[A-Za-z0-9_-]+\.)*[A-Za-z_-][A-Za-z0-9_-]*"
    rf"|{_OCTET}(?:\.{_OCTET}){{3}}|\[{_ipv6_address()}\])"
    rf"(?::{_PORT})?"
    rf"(?:/[^?#{_CONTROL_OR_SPACE}]*)?(?:\?[^#{_CONTROL_OR_SPACE}]*)?$"
)

# MIN-MAX with non-negative decimal bounds, either one may be left out (not both), whitespace
# around a bound is ignored. That MIN must not be above MAX is the one rule no pattern states.
_BOUND = r"[0-9]+(?:\.[0-9]+)?"
_SIDE = rf"[{WHITESPACE}]*{_BOUND}[{WHITESPACE}]*"
_MAYBE_SIDE = rf"[{WHITESPACE}]*(?:{_BOUND}[{WHITESPACE}]*)?"
PRICE_RANGE_PATTERN = rf"^(?:{_SIDE}-{_MAYBE_SIDE}|{_MAYBE_SIDE}-{_SIDE})$"


# -- ids: 1 to MAX_ID; as text, 1 to 19 ASCII digits (catalogue.ids) -----------------------------

_DIGITS = "0123456789"
_TOP = str(MAX_ID)


def _char_class(characters: Iterable[str]) -> str:
    """A regex for one of `characters` (ASCII letters and digits here), with ranges."""
    codes = sorted({ord(c) for c in characters})
    if len(codes) == 1:
        return chr(codes[0])
    parts, start = [], 0
    for end in range(len(codes)):
        if end + 1 == len(codes) or codes[end + 1] != codes[end] + 1:
            low, high = chr(codes[start]), chr(codes[end])
            parts.append(
                low + high if end == start + 1 else f"{low}-{high}" if end > start else low
            )
            start = end + 1
    return "[" + "".join(parts) + "]"


def _repeat(piece: str, count: int) -> str:
    if count <= 1:
        return piece * count
    atomic = piece[0] == "[" and piece.index("]") == len(piece) - 1
    return f"{piece}{{{count}}}" if atomic else f"(?:{piece}){{{count}}}"


def _not_above_top(digit: Callable[[int, str], str], rest: Callable[[int], str]) -> str:
    """A regex for the numbers of MAX_ID's length that are not above it (so not starting with
    0): `digit(at, allowed)` is the regex of the digit at position `at`, one of `allowed`, and
    `rest(at)` that of any digits from `at` on. Nested: each level keeps MAX_ID's digit and goes
    on, or takes a smaller one and anything after it."""
    regex = ""
    for at in reversed(range(len(_TOP))):
        same = digit(at, _TOP[at]) + regex
        below = _DIGITS[1 if at == 0 else 0 : int(_TOP[at])]
        if not below:
            regex = same
            continue
        smaller = digit(at, below) + rest(at + 1)
        regex = f"{smaller}|{same}" if at == 0 else f"(?:{smaller}|{same})"
    return regex


def _decimal_digit(at: int, allowed: str) -> str:
    return _char_class(allowed)


# Ids in text (paths, queries, bodies): 1 to MAX_ID in decimal, leading zeros allowed as long as
# there are 19 digits at most (so the pattern goes with a maxLength of MAX_ID_LENGTH).
ID_PATTERN = (
    f"^0*(?:[1-9][0-9]{{0,{len(_TOP) - 2}}}|"
    + _not_above_top(_decimal_digit, lambda at: _repeat("[0-9]", len(_TOP) - at))
    + ")$"
)


def parse_id(value: Any, field: str) -> int:
    """An id given as an integer or a string of digits; positive and within BIGINT."""
    # Every GET /products/{id} passes here: the usual case without the regex (ASCII digits are
    # what ID_DIGITS matches; ~0.1 µs instead of ~0.3). Anything else takes the full checks.
    if (
        type(value) is str
        and len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and value.isdigit()
        and 1 <= (number := int(value)) <= MAX_ID
    ):
        return number
    if isinstance(value, bool):
        raise bad_request(f"{field} must be a positive integer or a string of digits", field)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and ID_DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise bad_request(f"{field} must be a positive integer or a string of digits", field)
    if not 1 <= number <= MAX_ID:
        raise bad_request(f"{field} must be between 1 and {MAX_ID}", field)
    return number


# -- request bodies ---------------------------------------------------------------------------

_TEXT = re.compile(TEXT_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_URL = re.compile(URL_PATTERN)


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    email: str


@dataclass(frozen=True, slots=True)
class NewProduct:
    user_id: int | None  # None: the caller's own (the access middleware knows who that is)
    name: str
    description: str
    images: list[str]
    price: Decimal


def json_object(body: Any) -> dict[str, Any]:
    """The body as a JSON object, or 400 (creates and patches share this and text_field)."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def _required(body: dict[str, Any], field: str) -> Any:
    if field not in body or body[field] is None:
        raise bad_request(f"{field} is required", field)
    return body[field]


def text_field(body: dict[str, Any], field: str, max_length: int, *, required: bool = True) -> str:
    """A text field, stripped of surrounding whitespace; its length counts what was sent."""
    value = _required(body, field) if required else body.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string", field)
    if len(value) > max_length:
        raise bad_request(f"{field} must be at most {max_length} characters", field)
    _no_nul(value, field)
    if required and not _TEXT.fullmatch(value):
        raise bad_request(f"{field} must not be empty or only whitespace", field)
    return value.strip()


def _no_nul(value: str, field: str) -> None:
    # PostgreSQL text cannot hold U+0000: it would fail in the database as a 500.
    if "\x00" in value:
        raise bad_request(f"{field} must not contain NUL (U+0000) characters", field)


def parse_name_filter(text: str | None) -> str | None:
    """The product_name filter of the list: a substring, or None when absent or empty."""
    if not text:
        return None
    if len(text) > MAX_NAME_LENGTH:
        raise bad_request(
            f"product_name must be at most {MAX_NAME_LENGTH} characters", "product_name"
        )
    _no_nul(text, "product_name")
    return text


def parse_price(value: Any, field: str = "product_price") -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{field} must be a number", field)
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_request(f"{field} must be a finite number", field)
    # repr() of a float is the shortest text that reads back as it, i.e. what the client sent.
    price = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return _check_price(price, field)


def _check_price(price: Decimal, field: str) -> Decimal:
    if price < 0:
        raise bad_request(f"{field} must not be negative", field)
    if price >= MAX_PRICE:
        raise bad_request(f"{field} must be below {MAX_PRICE}", field)
    if price != price.quantize(PRICE_STEP):
        raise bad_request(f"{field} must have at most 2 decimals", field)
    return price.quantize(PRICE_STEP)


def parse_image_urls(value: Any, max_images: int, field: str = "product_images") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"{field} must be a list of URLs", field)
    if len(value) > max_images:
        raise bad_request(f"{field} must hold at most {max_images} URLs", field)
    urls = []
    for index, url in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(url, str):
            raise bad_request(f"{where} must be a string", where)
        if len(url) > MAX_URL_LENGTH:
            raise bad_request(f"{where} must be at most {MAX_URL_LENGTH} characters", where)
        _no_nul(url, where)
        if not _URL.fullmatch(url):
            raise bad_request(
                f"{where} must be an http or https URL with a host, and without whitespace "
                "or control characters",
                where,
            )
        urls.append(url)
    return urls


def parse_new_user(body: Any) -> NewUser:
    body = json_object(body)
    username = text_field(body, "username", MAX_NAME_LENGTH)
    email = text_field(body, "email", MAX_EMAIL_LENGTH)
    if not _EMAIL.fullmatch(email):
        raise bad_request("email must be an email address", "email")
    return NewUser(username, email)


def parse_new_product(body: Any, max_images: int, *, user_id_required: bool = True) -> NewProduct:
    body = json_object(body)
    user_id = body.get("user_id")
    if user_id is None and user_id_required:
        user_id = _required(body, "user_id")
    return NewProduct(
        user_id=None if user_id is None else parse_id(user_id, "user_id"),
        name=text_field(body, "product_name", MAX_NAME_LENGTH),
        description=text_field(body, "product_description", MAX_DESCRIPTION_LENGTH, required=False),
        images=parse_image_urls(body.get("product_images"), max_images),
        price=parse_price(_required(body, "product_price")),
    )


# -- list filters -------------------------------------------------------------------------------


def parse_price_range(text: str) -> tuple[Decimal | None, Decimal | None]:
    """`MIN-MAX`, inclusive, either side may be empty (`20-`, `-50`), decimals allowed."""
    low_text, sep, high_text = text.partition("-")
    if not sep:
        raise bad_request(
            "price_range must look like MIN-MAX, e.g. 20-50, 20- or -50", "price_range"
        )

    def bound(part: str) -> Decimal | None:
        part = part.strip()
        if not part:
            return None
        if not _PRICE_TEXT.fullmatch(part):
            raise bad_request(
                f"price_range bound {part!r} is not a non-negative number", "price_range"
            )
        try:
            return Decimal(part)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
            raise bad_request(
                f"price_range bound {part!r} is not a number", "price_range"
            ) from None

    low, high = bound(low_text), bound(high_text)
    if low is None and high is None:
        raise bad_request("price_range needs at least one bound", "price_range")
    if low is not None and high is not None and low > high:
        raise bad_request("price_range minimum is above its maximum", "price_range")
    return low, high


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(text) or not MIN_LIMIT <= int(text) <= MAX_LIMIT:
        raise bad_request(f"limit must be an integer from {MIN_LIMIT} to {MAX_LIMIT}", "limit")
    return int(text)


# Last-Event-ID (GET /products/{id}/events): the product version a reconnecting client saw
# last, as the stream's `id:` fields write it.
EVENT_ID_PATTERN = "^[0-9]{1,19}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN[1:-1])


def parse_last_event_id(text: str | None) -> int | None:
    """The version a reconnecting client holds; None without one (an empty header is none: an
    empty `id:` resets a client's last event id)."""
    if not text:
        return None
    if not _EVENT_ID.fullmatch(text):
        raise bad_request(
            "Last-Event-ID must be a product version: 1 to 19 digits", "Last-Event-ID"
        )
    return int(text)


# -- keyset cursor: opaque to clients, it carries the last id of the previous page ---------------
#
# The base64url text (unpadded) of `p1:` and the id in decimal, as `encode_cursor` writes it and
# nothing else: CURSOR_PATTERN spells out exactly those texts. Base64 turns 3 bytes into 4
# characters, and with ASCII digits each character depends on one digit only (the first two on
# the first digit of the 3, the third on the second, the fourth on the third), so a digit of a
# given set becomes a character (or a pair) of a set too.

_CURSOR_PREFIX = "p1:"  # 3 bytes, so its base64 ends on a boundary: "cDE6"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _b64_digit(at: int, allowed: str, length: int) -> str:
    """The regex of what encodes the digit at position `at` (one of `allowed`) of a number of
    `length` digits."""
    size = min(3, length - at // 3 * 3)  # of the 3-digit group it is in (the last may be shorter)
    offset = at % 3
    if offset == 1:
        return _char_class(_b64("0" + d + "0" * (size - 2))[2] for d in allowed)
    if offset == 2:
        return _char_class(_b64("00" + d)[3] for d in allowed)
    pairs: dict[str, set[str]] = {}
    for d in allowed:
        text = _b64(d + "0" * (size - 1))
        pairs.setdefault(text[0], set()).add(text[1])
    lead = "|".join(first + _char_class(seconds) for first, seconds in sorted(pairs.items()))
    return f"(?:{lead})" if len(pairs) > 1 else lead


def _b64_any(start: int, length: int) -> str:
    """The regex of what encodes any digits from position `start` of a number of `length`."""
    group_end = min(length, -(-start // 3) * 3)  # the end of the group `start` is in
    full = (length - group_end) // 3  # whole groups after it
    tail = group_end + 3 * full
    return (
        "".join(_b64_digit(at, _DIGITS, length) for at in range(start, group_end))
        + _repeat("".join(_b64_digit(at, _DIGITS, length) for at in range(3)), full)
        + "".join(_b64_digit(at, _DIGITS, length) for at in range(tail, length))
    )


def _b64_ids() -> str:
    """What encodes 1..MAX_ID: shorter numbers (a group with a first digit that is not 0, then
    4 more groups at most and a shorter last one, or 5 more), then those of MAX_ID's length."""
    first = _b64_digit(0, _DIGITS[1:], 3) + _b64_any(1, 3)
    group = _b64_any(0, 3)
    shorter = "|".join(
        [
            _b64_digit(0, _DIGITS[1:], 1),
            _b64_digit(0, _DIGITS[1:], 2) + _b64_any(1, 2),
            f"{first}(?:(?:{group}){{0,4}}(?:{_b64_any(0, 1)}|{_b64_any(0, 2)})?"
            f"|{_repeat(group, 5)})",
        ]
    )
    length = len(_TOP)
    longest = _not_above_top(
        lambda at, allowed: _b64_digit(at, allowed, length), lambda at: _b64_any(at, length)
    )
    return f"{shorter}|{longest}"


CURSOR_PATTERN = f"^{_b64(_CURSOR_PREFIX)}(?:{_b64_ids()})$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(last_id: int) -> str:
    return _b64(f"{_CURSOR_PREFIX}{last_id}")


def decode_cursor(cursor: str) -> int:
    """The id a cursor carries; 400 for anything `encode_cursor` does not write (CURSOR_PATTERN
    admits nothing else, so what it admits decodes)."""
    if not _CURSOR.fullmatch(cursor):
        raise bad_request("cursor is not valid; use the Link header of the previous page", "cursor")
    return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()[3:])


# -- webhooks ---------------------------------------------------------------------------------

_WEBHOOK_URL = re.compile(WEBHOOK_URL_PATTERN)


@dataclass(frozen=True, slots=True)
class NewWebhook:
    user_id: int | None  # None: the caller's own
    url: str
    events: tuple[str, ...]


def parse_new_webhook(
    body: Any, event_types: Sequence[str], *, user_id_required: bool
) -> NewWebhook:
    """`url` (WEBHOOK_URL_PATTERN; its address is the SSRF rules' to judge), `events` (known
    types, each once; every type when left out), `user_id` as for products."""
    body = json_object(body)
    user_id = body.get("user_id")
    if user_id is None and user_id_required:
        user_id = _required(body, "user_id")
    url = _required(body, "url")
    if not isinstance(url, str):
        raise bad_request("url must be a string", "url")
    if len(url) > MAX_URL_LENGTH:
        raise bad_request(f"url must be at most {MAX_URL_LENGTH} characters", "url")
    if not _WEBHOOK_URL.fullmatch(url):
        raise bad_request(
            "url must be an http or https URL with a host name or IP address, an optional port, "
            "path and query, and no user info, fragment, whitespace or control characters",
            "url",
        )
    events = body.get("events")
    if events is None:
        chosen = tuple(event_types)
    else:
        if not isinstance(events, list) or not events:
            raise bad_request("events must be a non-empty list of event types", "events")
        for index, event in enumerate(events):
            if event not in event_types:
                raise bad_request(
                    f"events[{index}] must be one of {', '.join(event_types)}", f"events[{index}]"
                )
        if len(set(events)) != len(events):
            raise bad_request("events must name each event type once", "events")
        chosen = tuple(events)
    return NewWebhook(None if user_id is None else parse_id(user_id, "user_id"), url, chosen)
