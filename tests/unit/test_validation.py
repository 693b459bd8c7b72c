"""Every input rule of the API, one test each, on the pure parsers."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from db.products import ListFilter, like_pattern, list_query
from server.errors import ApiError
from server.validation import (
    decode_cursor,
    encode_cursor,
    parse_id,
    parse_limit,
    parse_name_filter,
    parse_new_product,
    parse_new_user,
    parse_price_range,
)

GOOD = {
    "user_id": "1",
    "product_name": "Lamp",
    "product_description": "A lamp",
    "product_images": ["https://example.com/a.jpg"],
    "product_price": 19.99,
}


def rejects(body, field=None):
    with pytest.raises(ApiError) as info:
        parse_new_product(body, max_images=20)
    assert info.value.status == 400
    if field:
        assert field in info.value.message
    return info.value


def test_valid_product_is_parsed():
    new = parse_new_product(GOOD, max_images=20)
    assert (new.user_id, new.name, new.price) == (1, "Lamp", Decimal("19.99"))


def test_integer_user_id_is_accepted():
    assert parse_new_product({**GOOD, "user_id": 7}, max_images=20).user_id == 7


def test_body_that_is_not_an_object_is_rejected():
    rejects([GOOD])


@pytest.mark.parametrize("field", ["user_id", "product_name", "product_price"])
def test_missing_required_field_is_named(field):
    body = {k: v for k, v in GOOD.items() if k != field}
    error = rejects(body, field)
    assert error.details == {"field": field}


@pytest.mark.parametrize("user_id", [True, 1.5, "abc", "-3", 0, "0", -1, [1], 2**63])
def test_bad_user_id_is_rejected(user_id):
    rejects({**GOOD, "user_id": user_id}, "user_id")


def test_negative_price_is_rejected():
    rejects({**GOOD, "product_price": -1}, "product_price")


def test_infinite_price_is_rejected():
    rejects({**GOOD, "product_price": float("inf")}, "product_price")


def test_nan_price_is_rejected():
    rejects({**GOOD, "product_price": float("nan")}, "product_price")


def test_over_precise_price_is_rejected():
    rejects({**GOOD, "product_price": 19.999}, "product_price")


def test_absurdly_large_price_is_rejected():
    rejects({**GOOD, "product_price": 1e12}, "product_price")


@pytest.mark.parametrize("price", ["19.99", True, None, [1]])
def test_price_of_wrong_type_is_rejected(price):
    rejects({**GOOD, "product_price": price}, "product_price")


def test_price_with_two_decimals_keeps_its_value():
    assert parse_new_product({**GOOD, "product_price": 0.1}, 20).price == Decimal("0.10")


def test_empty_name_is_rejected():
    rejects({**GOOD, "product_name": "   "}, "product_name")


def test_name_over_255_characters_is_rejected():
    rejects({**GOOD, "product_name": "x" * 256}, "product_name")


def test_name_of_255_characters_is_accepted():
    assert parse_new_product({**GOOD, "product_name": "x" * 255}, 20).name == "x" * 255


def test_name_of_wrong_type_is_rejected():
    rejects({**GOOD, "product_name": 5}, "product_name")


def test_too_many_images_are_rejected():
    rejects({**GOOD, "product_images": ["https://e.com/a.jpg"] * 21}, "product_images")


@pytest.mark.parametrize(
    "url", ["ftp://e.com/a.jpg", "file:///etc/passwd", "e.com/a.jpg", "http://"]
)
def test_non_http_url_is_rejected(url):
    rejects({**GOOD, "product_images": [url]}, "product_images[0]")


def test_url_over_2048_characters_is_rejected():
    rejects({**GOOD, "product_images": ["https://e.com/" + "a" * 2040]}, "product_images[0]")


def test_images_that_are_not_a_list_are_rejected():
    rejects({**GOOD, "product_images": "https://e.com/a.jpg"}, "product_images")


def test_missing_images_mean_no_images():
    assert (
        parse_new_product({k: v for k, v in GOOD.items() if k != "product_images"}, 20).images == []
    )


def test_user_needs_an_email_address():
    with pytest.raises(ApiError, match="email"):
        parse_new_user({"username": "ann", "email": "not-an-email"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20-50", (Decimal(20), Decimal(50))),
        ("20-", (Decimal(20), None)),
        ("-50", (None, Decimal(50))),
        ("19.5-20.25", (Decimal("19.5"), Decimal("20.25"))),
        ("5-5", (Decimal(5), Decimal(5))),
    ],
)
def test_price_range_forms(text, expected):
    assert parse_price_range(text) == expected


@pytest.mark.parametrize(
    "text", ["abc", "20", "a-b", "NaN-5", "-", "50-20", "--5", "1e3-5", "20-50-70", "inf-"]
)
def test_bad_price_range_is_rejected(text):
    with pytest.raises(ApiError, match="price_range") as info:
        parse_price_range(text)
    assert info.value.status == 400


@pytest.mark.parametrize("text", ["0", "201", "-1", "ten", "1.5", "", "²", "٣", "9" * 5000])
def test_limit_outside_1_to_200_is_rejected_not_clamped(text):
    with pytest.raises(ApiError, match="limit"):
        parse_limit(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("product_name", "Lamp\x00"),
        ("product_description", "a\x00b"),
        ("product_images[0]", ["https://example.com/a\x00.jpg"]),
    ],
)
def test_nul_characters_are_rejected_before_the_database_sees_them(field, value):
    key = field.removesuffix("[0]")
    error = rejects({**GOOD, key: value}, field)
    assert "NUL" in error.message


def test_nul_in_a_username_or_email_is_rejected():
    with pytest.raises(ApiError, match="NUL"):
        parse_new_user({"username": "a\x00", "email": "a@example.com"})


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("", None), ("Lamp", "Lamp")])
def test_name_filter_is_optional(text, expected):
    assert parse_name_filter(text) == expected


@pytest.mark.parametrize("text", ["a\x00", "x" * 256])
def test_bad_name_filter_is_rejected(text):
    with pytest.raises(ApiError, match="product_name") as info:
        parse_name_filter(text)
    assert info.value.status == 400


def test_limit_defaults_to_50():
    assert parse_limit(None) == 50


@pytest.mark.parametrize("last_id", [1, 42, 2**63 - 1])
def test_cursor_round_trips(last_id):
    assert decode_cursor(encode_cursor(last_id)) == last_id


@pytest.mark.parametrize("cursor", ["", "!!!", "cDE6YWJj", encode_cursor(5)[:-1] + "*", "cDE6MA"])
def test_bad_cursor_is_rejected(cursor):
    with pytest.raises(ApiError, match="cursor"):
        decode_cursor(cursor)


def test_id_from_path_must_be_positive_digits():
    assert parse_id("12", "product_id") == 12
    for bad in ("0", "-1", "1.0", "abc", "9" * 20):
        with pytest.raises(ApiError):
            parse_id(bad, "product_id")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("lamp", "%lamp%"), ("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
)
def test_like_pattern_escapes_wildcards(name, pattern):
    assert like_pattern(name) == pattern


def test_list_query_binds_every_filter_as_a_parameter():
    sql, args = list_query(
        ListFilter(1, Decimal(1), Decimal(2), "x'; drop table products; --", 99, 11)
    )
    assert "drop" not in sql
    assert args == [1, Decimal(1), Decimal(2), "%x'; drop table products; --%", 99, 11]
    assert sorted(re.findall(r"\$\d+", sql)) == ["$1", "$2", "$3", "$4", "$5", "$6"]
