"""Which rendition GET /products/{id}/images/{n} redirects to: widths, formats, Accept q-values
and specificity, the fallback, and the input rules of n, w and format (server/rendition_choice),
as the OpenAPI document states them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.errors import ApiError
from server.openapi import openapi_document
from server.rendition_choice import (
    FORMATS,
    MAX_WIDTH,
    Rendition,
    by_width,
    choose,
    negotiate,
    parse_format,
    parse_index,
    parse_width,
    renditions_of,
    weights,
)

LADDER = (320, 640, 1024, 1600)
ALL = ("jpeg", "webp", "avif")
DEFAULT = ("jpeg", "webp")  # IMAGE_OUTPUT_FORMATS' default

# What browsers send with an <img> request (their image Accept, not their page one).
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
FIREFOX_65 = "image/webp,*/*"  # 65 to 92: WebP, no AVIF
SAFARI_17 = (
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
    "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
)
SAFARI_14 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
SAFARI_13 = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"  # neither decoded
IE_11 = "image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5"


def ladder(formats=ALL, widths=LADDER) -> list[Rendition]:
    return [Rendition(f"https://cdn.example/{w}.{f}", w, f) for f in formats for w in widths]


def chosen(accept: str | None = None, *, formats=ALL, width: int | None = None, fmt=None):
    rendition = choose(ladder(formats), width=width, fmt=fmt, accept=accept)
    assert rendition is not None
    return rendition.format, rendition.width


# -- widths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "expected"),
    [(1, 320), (320, 320), (321, 640), (640, 640), (641, 1024), (1600, 1600), (1601, 1600)],
)
def test_the_smallest_rendition_at_least_w_wide(width, expected):
    assert by_width(ladder(("jpeg",)), width).width == expected


def test_past_the_largest_rendition_the_largest():
    assert by_width(ladder(("jpeg",)), MAX_WIDTH).width == 1600


def test_without_w_the_largest():
    assert by_width(ladder(("jpeg",)), None).width == 1600


def test_a_source_smaller_than_the_ladder_has_one_rendition_for_every_width():
    small = [Rendition("https://cdn.example/200.jpg", 200, "jpeg")]
    assert {by_width(small, w) for w in (None, 1, 200, 640, MAX_WIDTH)} == {small[0]}


def test_widths_need_not_be_listed_in_order():
    shuffled = [Rendition(f"u{w}", w, "jpeg") for w in (1024, 320, 1600, 640)]
    assert by_width(shuffled, 500).width == 640
    assert by_width(shuffled, None).width == 1600


def test_no_renditions_no_choice():
    assert by_width([], 640) is None
    assert choose([], width=640, accept=CHROME) is None


def test_the_width_is_chosen_within_the_format():
    # The WebP ladder lacks the 640: a WebP client gets the 1024 WebP, not the 640 JPEG.
    renditions = [r for r in ladder(DEFAULT) if (r.format, r.width) != ("webp", 640)]
    rendition = choose(renditions, width=600, accept=CHROME)
    assert (rendition.format, rendition.width) == ("webp", 1024)


# -- browsers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "with_avif", "without_avif"),
    [
        (CHROME, "avif", "webp"),
        (FIREFOX, "avif", "webp"),
        (FIREFOX_65, "avif", "webp"),  # */* allows AVIF too
        (SAFARI_17, "avif", "webp"),
        # Wildcards allow every format: the best produced (such pages link format=jpeg).
        (SAFARI_14, "avif", "webp"),
        (SAFARI_13, "avif", "webp"),
        (IE_11, "avif", "webp"),
    ],
)
def test_each_browser_gets_the_best_format_its_accept_allows(accept, with_avif, without_avif):
    assert chosen(accept, formats=ALL, width=640) == (with_avif, 640)
    assert chosen(accept, formats=DEFAULT, width=640) == (without_avif, 640)


def test_a_missing_or_blank_accept_allows_every_format_and_gets_the_best():
    for accept in (None, "", "  "):
        assert negotiate(ALL, accept) == "avif"
        assert negotiate(DEFAULT, accept) == "webp"
        assert weights(accept) == weights("*/*")
    assert negotiate(("jpeg",), None) == "jpeg"


@pytest.mark.parametrize("accept", ["*/*", "image/*", "image/*;q=0.8, */*;q=0.5"])
def test_wildcards_allow_every_format(accept):
    assert all(weights(accept)[fmt].acceptable for fmt in FORMATS)
    assert negotiate(ALL, accept) == "avif"
    assert negotiate(("webp", "jpeg"), accept) == "webp"


# -- q-values ------------------------------------------------------------------------------------


def test_q_0_excludes_a_format():
    assert not weights("image/avif;q=0, */*")["avif"].acceptable
    assert negotiate(("avif", "webp"), "image/avif;q=0, image/webp") == "webp"
    assert negotiate(ALL, "image/avif;q=0, image/webp, */*") == "webp"
    assert negotiate(ALL, "image/avif;q=0, image/webp;q=0, */*") == "jpeg"


@pytest.mark.parametrize("zero", ["0", "0.", "0.0", "0.000"])
def test_every_spelling_of_q_0_excludes(zero):
    assert negotiate(("avif", "webp"), f"image/avif;q={zero},image/webp;q=0.1") == "webp"


def test_of_the_allowed_formats_the_best_compression_whatever_the_q_values():
    assert negotiate(ALL, "image/avif;q=0.5, image/webp;q=0.9, image/jpeg;q=0.8") == "avif"
    assert negotiate(ALL, "image/webp;q=0.001, image/jpeg") == "webp"
    assert negotiate(ALL, "image/jpeg, image/webp, image/avif") == "avif"
    assert negotiate(ALL, "image/jpeg, image/webp") == "webp"
    assert negotiate(ALL, "image/jpeg") == "jpeg"


def test_a_wildcard_allows_what_no_specific_range_excludes():
    assert negotiate(ALL, "image/webp, image/*") == "avif"
    assert negotiate(ALL, "image/jpeg, */*") == "avif"


def test_q_parameter_names_and_spaces_are_read_as_rfc_9110_allows():
    assert negotiate(("avif", "webp"), "image/avif ; Q=0 , image/webp") == "webp"
    assert negotiate(("avif", "webp"), "IMAGE/AVIF;q=0,Image/WebP") == "webp"


@pytest.mark.parametrize(
    "malformed",
    [
        *("image/avif;q=2", "image/avif;q=1.5", "image/avif;q=-1", "image/avif;q=0.0001"),
        *("image/avif;q=", "image/avif;q=abc"),
        *("image", "/avif", "image/", "*/avif", "image/av if", "image/avif/x"),
    ],
)
def test_a_malformed_element_is_ignored(malformed):
    assert not weights(malformed)["avif"].acceptable
    assert negotiate(("avif", "webp"), f"{malformed}, image/webp") == "webp"


def test_parameters_after_q_are_ignored():
    assert weights("image/avif;q=0.5;ext=1")["avif"].q == 0.5


# -- specificity ---------------------------------------------------------------------------------


def test_the_most_specific_range_decides_not_the_highest_q():
    weight = weights("image/avif;q=0.1, image/*;q=1, */*;q=1")
    assert (weight["avif"].q, weight["avif"].named) == (0.1, True)
    assert negotiate(ALL, "image/avif;q=0, image/*") == "webp"
    # image/* beats */* for every image format, whatever their order.
    assert weights("*/*;q=0, image/*;q=0.5")["webp"].q == 0.5
    assert weights("image/*;q=0.5, */*;q=0")["webp"].q == 0.5
    assert negotiate(ALL, "*/*;q=0.9, image/*;q=0") == "jpeg"  # none acceptable: the fallback


def test_a_specific_type_overrides_an_excluding_wildcard():
    assert negotiate(ALL, "image/*;q=0, image/webp") == "webp"
    assert negotiate(ALL, "*/*;q=0, image/avif;q=0.1") == "avif"


def test_an_excluded_specific_type_stays_excluded_under_a_wildcard():
    assert negotiate(("webp", "jpeg"), "image/webp;q=0, image/*") == "jpeg"
    assert negotiate(ALL, "image/webp;q=0, image/avif;q=0, image/*") == "jpeg"


def test_a_range_with_parameters_matches_only_a_type_with_them():
    # These images have no media-type parameters, so the ranges below do not apply to them.
    assert not weights("image/avif;profile=x")["avif"].acceptable
    assert negotiate(("avif", "webp"), 'image/avif;profile="x";q=1, image/webp') == "webp"
    assert weights("image/avif;profile=x;q=0, image/avif;q=0.7")["avif"].q == 0.7


def test_of_two_equally_specific_ranges_the_higher_q():
    assert weights("image/webp;q=0.2, image/webp;q=0.6")["webp"].q == 0.6


def test_commas_inside_quoted_parameters_do_not_split_elements():
    # Split at every comma, the quoted string would hide an "image/avif" element.
    assert negotiate(("avif", "webp"), 'text/plain;x=",image/avif,", image/webp') == "webp"
    assert negotiate(("avif", "webp"), 'text/plain;x="\\",image/avif", image/webp') == "webp"


def test_other_types_and_unknown_image_types_do_not_match():
    assert not any(weights("text/*, text/html, image/png, video/*")[f].acceptable for f in ALL)


# -- fallback ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("produced", "expected"),
    [
        (ALL, "jpeg"),
        (("avif", "webp", "jpeg"), "jpeg"),
        (("avif", "webp"), "webp"),
        (("avif",), "avif"),
    ],
)
def test_when_nothing_produced_is_acceptable_the_most_widely_decodable(produced, expected):
    assert negotiate(produced, "text/html") == expected
    assert negotiate(produced, "image/jpeg;q=0, image/webp;q=0, image/avif;q=0") == expected


def test_a_fallback_still_chooses_by_width():
    assert chosen("text/html", formats=("avif", "webp"), width=700) == ("webp", 1024)


def test_unknown_formats_are_never_chosen():
    assert negotiate(("jxl",), None) is None
    assert negotiate(("jxl", "webp"), "image/jxl") == "webp"


# -- format= -------------------------------------------------------------------------------------


def test_format_overrides_accept():
    assert chosen(CHROME, fmt="jpeg", width=640) == ("jpeg", 640)
    assert chosen(IE_11, fmt="avif") == ("avif", 1600)
    assert chosen("image/webp;q=0", fmt="webp", width=1000) == ("webp", 1024)


def test_format_not_produced_is_no_choice():
    assert choose(ladder(DEFAULT), fmt="avif", accept=CHROME) is None


# -- properties ----------------------------------------------------------------------------------

_RENDITIONS = st.lists(
    st.builds(
        Rendition,
        url=st.text(min_size=1, max_size=8),
        width=st.integers(1, 4000),
        format=st.sampled_from(ALL),
    ),
    min_size=1,
    max_size=12,
)
_ACCEPT = st.lists(
    st.tuples(
        st.sampled_from(["*/*", "image/*", "image/jpeg", "image/webp", "image/avif", "text/html"]),
        st.sampled_from(["", ";q=0", ";q=0.5", ";q=1", ";q=0.001"]),
    ),
    max_size=6,
).map(lambda parts: ", ".join(media + q for media, q in parts))


@given(_RENDITIONS, st.none() | st.integers(1, MAX_WIDTH), _ACCEPT)
def test_there_is_always_a_choice_and_it_fits_the_width_rule(renditions, width, accept):
    rendition = choose(renditions, width=width, accept=accept)
    assert rendition in renditions
    same_format = [r.width for r in renditions if r.format == rendition.format]
    if width is not None and max(same_format) >= width:
        assert rendition.width == min(w for w in same_format if w >= width)
    else:
        assert rendition.width == max(same_format)


@given(_RENDITIONS, _ACCEPT)
def test_an_acceptable_format_is_chosen_whenever_one_is_produced(renditions, accept):
    weight = weights(accept)
    rendition = choose(renditions, accept=accept)
    allowed = {r.format for r in renditions if weight[r.format].acceptable}
    if allowed:
        # The best compression of those allowed.
        assert rendition.format == min(allowed, key=("avif", "webp", "jpeg").index)


# -- input ---------------------------------------------------------------------------------------


def refused(parse, text, field):
    with pytest.raises(ApiError) as raised:
        parse(text)
    assert raised.value.status == 400
    assert raised.value.details == {"field": field}
    assert field in raised.value.message
    return raised.value


@pytest.mark.parametrize("text", ["0", "-1", "10001", "99999", "abc", "", "6.5", "+5", " 5", "٣"])
def test_a_bad_w_is_400_naming_w(text):
    refused(parse_width, text, "w")


@pytest.mark.parametrize(
    ("text", "width"), [(None, None), ("1", 1), ("640", 640), ("10000", 10000)]
)
def test_w_from_1_to_10000(text, width):
    assert parse_width(text) == width


@pytest.mark.parametrize("text", ["gif", "JPEG", "jpg", "", "webp "])
def test_an_unknown_format_is_400_naming_format(text):
    refused(parse_format, text, "format")


def test_the_formats():
    assert [parse_format(f) for f in (None, "jpeg", "webp", "avif")] == [None, *ALL]


@pytest.mark.parametrize("text", ["-1", "a", "1.0", "", "٣", "0x1"])
def test_an_index_that_is_not_digits_is_400_naming_n(text):
    refused(parse_index, text, "n")


def test_an_index_in_digits_is_a_number_or_too_large_to_name_an_image():
    assert [parse_index(t) for t in ("0", "7", "007", "999999999")] == [0, 7, 7, 999999999]
    assert parse_index("1" * 10) is None
    assert parse_index("0" * 20 + "3") == 3
    assert parse_index("9" * 5000) is None  # never turned into an int


def test_renditions_are_read_from_the_product_json_entry():
    entry = {
        "source": "https://shop.example/a.jpg",
        "status": "ready",
        "renditions": [
            {"url": "u1", "width": 320, "height": 240, "format": "jpeg", "bytes": 100},
            {"url": "u2", "width": 320, "height": 240, "format": "jxl", "bytes": 90},
            {"url": "u3", "width": "640", "format": "webp"},
            {"url": "u4", "width": True, "format": "webp"},
            "nonsense",
            {"width": 640, "format": "webp"},
        ],
    }
    assert renditions_of(entry) == [Rendition("u1", 320, "jpeg")]
    assert renditions_of({"status": "pending", "renditions": []}) == []
    assert renditions_of({"status": "ready", "url": "legacy"}) == []


# -- the OpenAPI document states these rules -----------------------------------------------------


def test_the_document_states_the_operation_and_its_constraints(offline_settings):
    document = openapi_document(offline_settings.replace(auth_mode="api_key"))
    operation = document["paths"]["/products/{product_id}/images/{n}"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["n"]["schema"] == {"type": "integer", "minimum": 0}
    assert parameters["w"]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_WIDTH}
    assert parameters["format"]["schema"] == {"type": "string", "enum": list(FORMATS)}
    assert parameters["product_id"]["in"] == parameters["n"]["in"] == "path"
    assert not parameters["w"]["required"]
    assert not parameters["format"]["required"]
    redirect = operation["responses"]["302"]
    assert "content" not in redirect
    for header in ("Location", "Vary", "Cache-Control"):
        assert redirect["headers"][header]["required"], header
    assert {"302", "400", "401", "404", "429"} <= set(operation["responses"])


def test_the_product_schema_lists_each_images_renditions(offline_settings):
    schemas = openapi_document(offline_settings)["components"]["schemas"]
    item = schemas["Product"]["properties"]["images"]["items"]
    assert "renditions" in item["required"]
    assert item["properties"]["renditions"]["items"] == {"$ref": "#/components/schemas/Rendition"}
    rendition = schemas["Rendition"]
    assert set(rendition["required"]) == {"url", "width", "height", "format", "bytes"}
    assert rendition["properties"]["format"]["enum"] == list(FORMATS)
