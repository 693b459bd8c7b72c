"""Parsing and validation of request input: pure functions that raise ApiError with a precise
message naming the field, so handlers stay thin and every rule has a unit test."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from catalogue.ids import ID_DIGITS, MAX_ID
from server.errors import bad_request

MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 10_000
MAX_URL_LENGTH = 2048
MAX_EMAIL_LENGTH = 320
# NUMERIC(12, 2) holds up to 9 999 999 999.99; anything near that is a typo, not a price.
MAX_PRICE = Decimal("1000000000")
MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 1, 200, 50

_LIMIT = re.compile(r"[0-9]{1,6}")  # ASCII only: str.isdigit() also takes "²", which int() refuses
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PRICE_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")


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


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def _required(body: dict[str, Any], field: str) -> Any:
    if field not in body or body[field] is None:
        raise bad_request(f"{field} is required", field)
    return body[field]


def parse_id(value: Any, field: str) -> int:
    """An id given as an integer or a string of digits; positive and within BIGINT."""
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


def _text(body: dict[str, Any], field: str, max_length: int, *, required: bool = True) -> str:
    value = _required(body, field) if required else body.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string", field)
    value = value.strip()
    if required and not value:
        raise bad_request(f"{field} must not be empty", field)
    if len(value) > max_length:
        raise bad_request(f"{field} must be at most {max_length} characters", field)
    _no_nul(value, field)
    return value


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
    if price != price.quantize(Decimal("0.01")):
        raise bad_request(f"{field} must have at most 2 decimals", field)
    return price.quantize(Decimal("0.01"))


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
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise bad_request(f"{where} is not a valid URL", where) from None
        if parts.scheme not in ("http", "https") or not host:
            raise bad_request(f"{where} must be an http or https URL", where)
        urls.append(url)
    return urls


def parse_new_user(body: Any) -> NewUser:
    body = _object(body)
    username = _text(body, "username", MAX_NAME_LENGTH)
    email = _text(body, "email", MAX_EMAIL_LENGTH)
    if not _EMAIL.fullmatch(email):
        raise bad_request("email must be an email address", "email")
    return NewUser(username, email)


def parse_new_product(body: Any, max_images: int, *, user_id_required: bool = True) -> NewProduct:
    body = _object(body)
    user_id = body.get("user_id")
    if user_id is None and user_id_required:
        user_id = _required(body, "user_id")
    return NewProduct(
        user_id=None if user_id is None else parse_id(user_id, "user_id"),
        name=_text(body, "product_name", MAX_NAME_LENGTH),
        description=_text(body, "product_description", MAX_DESCRIPTION_LENGTH, required=False),
        images=parse_image_urls(body.get("product_images"), max_images),
        price=parse_price(_required(body, "product_price")),
    )


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


# -- keyset cursor: opaque to clients, it carries the last id of the previous page ---------------

_CURSOR_PREFIX = "p1:"


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    error = bad_request("cursor is not valid; use the Link header of the previous page", "cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise error from None
    if not text.startswith(_CURSOR_PREFIX) or not ID_DIGITS.fullmatch(text[len(_CURSOR_PREFIX) :]):
        raise error
    last_id = int(text[len(_CURSOR_PREFIX) :])
    if not 1 <= last_id <= MAX_ID:
        raise error
    return last_id
