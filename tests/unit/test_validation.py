"""Every input rule of the API, one test each, on the pure parsers."""

from __future__ import annotations

import itertools
import random
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalogue.ids import MAX_ID
from db.products import ListFilter, like_pattern, list_query
from server.errors import ApiError
from server.validation import (
    CURSOR_PATTERN,
    EMAIL_PATTERN,
    ID_PATTERN,
    MAX_ID_LENGTH,
    NO_NUL_PATTERN,
    PRICE_RANGE_PATTERN,
    TEXT_PATTERN,
    URL_PATTERN,
    WHITESPACE,
    NewUser,
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


# -- the patterns the OpenAPI document publishes: each is exactly the rule the parser applies --

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def accepted(parse, *args) -> bool:
    try:
        parse(*args)
    except ApiError as error:
        status = error.status
    else:
        return True
    assert status == 400
    return False


def test_whitespace_is_what_strip_removes():
    every = (chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    pattern = re.compile(f"[{WHITESPACE}]")
    assert {c for c in every if pattern.fullmatch(c)} == {
        chr(c) for c in range(0x110000) if chr(c).isspace()
    }


@pytest.mark.parametrize(
    "text",
    [
        *["1", "9", "10", "0001", "0" * 18 + "1", str(MAX_ID), str(MAX_ID - 1), "1" + "0" * 18],
        *["0", "00", "", "-1", "1.0", "a", str(MAX_ID + 1), "9" * 19, "0" + str(MAX_ID), "²"],
    ],
)
def test_the_id_pattern_admits_exactly_the_ids(text):
    documented = bool(re.fullmatch(ID_PATTERN, text)) and len(text) <= MAX_ID_LENGTH
    assert documented == accepted(parse_id, text, "product_id")


@settings(max_examples=300, derandomize=True)
@given(st.integers(min_value=-(10**20), max_value=10**20), st.integers(0, 3))
def test_the_id_pattern_admits_exactly_the_ids_at_random(number, zeros):
    text = "0" * zeros + str(number)
    documented = bool(re.fullmatch(ID_PATTERN, text)) and len(text) <= MAX_ID_LENGTH
    assert documented == accepted(parse_id, text, "user_id")


def test_the_cursor_pattern_admits_exactly_the_cursors_the_api_writes():
    """Every text of 2 or 3 characters after the prefix (ids of 1 or 2 digits), and a sample of
    4 (3 digits, a whole base64 group), against what encode_cursor writes."""
    written = {encode_cursor(n) for n in range(1, 1000)}
    cursor = re.compile(CURSOR_PATTERN)
    tails = [*itertools.product(ALPHABET, repeat=2), *itertools.product(ALPHABET, repeat=3)]
    rng = random.Random(7)
    tails += [rng.choices(ALPHABET, k=4) for _ in range(100_000)]
    tails += [list(c.removeprefix("cDE6")) for c in written]
    for tail in tails:
        text = "cDE6" + "".join(tail)
        assert bool(cursor.fullmatch(text)) == (text in written), text


@settings(max_examples=300, derandomize=True)
@given(st.integers(min_value=1, max_value=MAX_ID))
def test_every_cursor_the_api_writes_is_documented_and_reads_back(last_id):
    assert re.fullmatch(CURSOR_PATTERN, encode_cursor(last_id))
    assert decode_cursor(encode_cursor(last_id)) == last_id


@settings(max_examples=300, derandomize=True)
@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_documented_cursor_reads(cursor):
    assert encode_cursor(decode_cursor(cursor)) == cursor


@pytest.mark.parametrize("last_id", [0, MAX_ID + 1, 10**19, 10**30])
def test_cursors_outside_the_ids_are_neither_documented_nor_read(last_id):
    cursor = encode_cursor(last_id)
    assert not re.fullmatch(CURSOR_PATTERN, cursor)
    assert not accepted(decode_cursor, cursor)


def test_cursors_are_read_as_written_only():
    written = encode_cursor(1234)
    for variant in [written + "==", written[:4] + "!" + written[4:], " " + written, "cDE6MDEy"]:
        assert not accepted(decode_cursor, variant), variant  # padding, junk, a leading zero


def user_accepted(username: str = "ann", email: str = "ann@example.com") -> bool:
    return accepted(parse_new_user, {"username": username, "email": email})


@pytest.mark.parametrize(
    "username",
    ["a", " a ", "\u3000x", "x" * 255, "", " ", "\t\n", "\u2003\x85", "x" * 256, "a\x00"],
)
def test_the_text_pattern_is_the_username_rule(username):
    documented = bool(re.fullmatch(TEXT_PATTERN, username)) and 1 <= len(username) <= 255
    assert documented == user_accepted(username=username)


def test_a_blank_username_is_a_400_naming_it():
    with pytest.raises(ApiError, match="username") as info:
        parse_new_user({"username": " \t", "email": "ann@example.com"})
    assert info.value.details == {"field": "username"}


def test_text_is_kept_stripped_and_measured_as_sent():
    assert parse_new_user({"username": "  ann ", "email": " a@b.co\n"}) == NewUser("ann", "a@b.co")
    assert not user_accepted(username=" " + "x" * 255)  # 256 characters sent


@pytest.mark.parametrize(
    "email",
    [
        "a@b.c",
        " a@b.c ",
        "a.b@c.d.e",
        "a@b",
        "a b@c.d",
        "@b.c",
        "a@.c",
        "a@b.",
        "a@b@c.d",
        "\u00850@0.0\u0085",
    ],
)
def test_the_email_pattern_is_the_email_rule(email):
    assert bool(re.fullmatch(EMAIL_PATTERN, email)) == user_accepted(email=email)


URLS = [
    "http://e.com",
    "HTTPS://e.com/a.jpg?x=1#f",
    "http://u:p@e.com:8080/a",
    "http://127.0.0.1/x",
    "http://[::1]/x",
    "http://[2001:db8::7]:443/",
    "http://[::ffff:192.0.2.1]/",
    "https://例え.jp/画像.jpg",
    "http://e.com/a b.jpg",
    "http://e.com/a\tb",
    "http://[1:2]/",
    "http://[::1/",
    "http://e.com:80x/",
    "http:///a.jpg",
    "http://@e.com/",
    "http://:80/",
    "ftp://e.com/a",
    "e.com/a.jpg",
    " http://e.com",
]


@pytest.mark.parametrize("url", URLS)
def test_the_url_pattern_is_the_image_url_rule(url):
    body = {**GOOD, "product_images": [url]}
    assert bool(re.fullmatch(URL_PATTERN, url)) == accepted(parse_new_product, body, 20)


@pytest.mark.parametrize(
    "text", ["20-50", "20-", "-50", " 1.5 - 2 ", "5-5", "50-20", "abc", "20", "-", "1e3-5", "--5"]
)
def test_the_price_range_pattern_is_its_shape(text):
    """Everything but MIN above MAX, which no pattern states."""
    shaped = bool(re.fullmatch(PRICE_RANGE_PATTERN, text))
    assert shaped == (accepted(parse_price_range, text) or text == "50-20")


@pytest.mark.parametrize(
    "pattern",
    [
        *(ID_PATTERN, CURSOR_PATTERN, TEXT_PATTERN, NO_NUL_PATTERN, EMAIL_PATTERN),
        *(URL_PATTERN, PRICE_RANGE_PATTERN),
    ],
)
def test_json_schema_reads_each_pattern_as_python_does(pattern):
    """The document's readers (schemathesis validates with jsonschema-rs) agree with `re`."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    samples = [
        *URLS,
        "",
        " ",
        "a",
        "a\x00",
        "\u3000x\u3000",
        "\x85",
        "\x1c",
        "x\u2028y",
        "a@b.c\n",
        "20-50",
        " 20 -",
        "1a-",
        encode_cursor(5),
        "cDE6MA",
        "0001",
        str(MAX_ID),
        str(MAX_ID + 1),
        "a\n",
    ]
    for sample in samples:
        assert validator.is_valid(sample) == bool(re.fullmatch(pattern, sample)), repr(sample)
