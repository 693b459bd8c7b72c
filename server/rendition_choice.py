"""Which rendition of a product image `GET /products/{id}/images/{n}` redirects to: pure
functions of the image's renditions, the requested width and format, and the Accept header.

The format comes first, then the width within it:

- `format=` names it outright (404 when the image has no rendition in it).
- Otherwise the Accept header decides which formats are allowed, by RFC 9110 §12.5.1: each
  format's q is that of the most specific media range that matches its type (`image/avif`
  before `image/*` before `*/*`; a range with media-type parameters matches only a
  representation that has them, and these have none); q=0, or no matching range, excludes a
  format; a missing or blank Accept counts as `*/*`. Of the produced formats allowed, the best
  compression wins, whatever the q-values: AVIF, then WebP, then JPEG (the issue's contract;
  a q above 0 says "acceptable", and every format allowed shows the same picture, so the
  smallest is the best answer). Browsers that decode AVIF or WebP name them (Chrome, Firefox,
  Safari 16+: `image/avif,image/webp,…`), so they get them. A client that sends wildcards
  only (`*/*`, `image/*`) allows every format and gets the best produced: a page that must
  serve browsers decoding neither WebP nor AVIF (IE 11, Safari 13) links `format=jpeg`, or
  uses `<picture>` with typed sources (the README says so).
- When no produced format is allowed (`Accept: text/html`, or every produced one at q=0), the
  answer falls back to the most widely decodable produced format: JPEG if produced, else
  WebP, else AVIF. An image the client may not show is still better than an error, which an
  <img> shows as nothing at all.

Then the width: the smallest rendition of that format at least `w` wide, the largest when none
is, and the largest without `w`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.errors import bad_request

# Best compression first: the order among the formats a client allows.
PREFERENCE = ("avif", "webp", "jpeg")
# Most widely decodable first: the order of the fallback when none is allowed.
COMPATIBILITY = ("jpeg", "webp", "avif")
FORMATS = COMPATIBILITY  # what `format=` may name, as the OpenAPI document lists them
MEDIA_SUBTYPES = {"jpeg": "jpeg", "webp": "webp", "avif": "avif"}  # image/<subtype>
MIN_WIDTH, MAX_WIDTH = 1, 10_000
# An index longer than this names no image (a product holds at most MAX_IMAGES_PER_PRODUCT):
# no need to turn thousands of digits into an int to find that out.
_MAX_INDEX_DIGITS = 9

_WIDTH = re.compile(r"[0-9]{1,5}")  # ASCII digits only, as server/validation.py's limit
_INDEX = re.compile(r"[0-9]+")

# How specific a media range is (RFC 9110 §12.5.1): the most specific match decides.
_ANY, _IMAGE_ANY, _EXACT = 0, 1, 2
# qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# token (RFC 9110 §5.6.2)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class Rendition:
    url: str
    width: int
    format: str


@dataclass(frozen=True, slots=True)
class Weight:
    """A format's weight under an Accept header: its q and how specific the range that gave it
    was (None: no range matched, so the format is not acceptable)."""

    q: float
    specificity: int | None

    @property
    def acceptable(self) -> bool:
        return self.specificity is not None and self.q > 0

    @property
    def named(self) -> bool:
        return self.specificity == _EXACT


# -- query and path input ------------------------------------------------------------------------


def parse_width(text: str | None) -> int | None:
    """`w`: an integer from MIN_WIDTH to MAX_WIDTH, or None when absent."""
    if text is None:
        return None
    if not _WIDTH.fullmatch(text) or not MIN_WIDTH <= int(text) <= MAX_WIDTH:
        raise bad_request(f"w must be an integer from {MIN_WIDTH} to {MAX_WIDTH}", "w")
    return int(text)


def parse_format(text: str | None) -> str | None:
    """`format`: one of FORMATS, or None when absent."""
    if text is None:
        return None
    if text not in FORMATS:
        raise bad_request(f"format must be one of {', '.join(FORMATS)}", "format")
    return text


def parse_index(text: str) -> int | None:
    """`n`: a 0-based image index in decimal digits; None for one too long to name an image
    (a 404, as any index past the last image is). Anything but digits is a 400."""
    if not _INDEX.fullmatch(text):
        raise bad_request("n must be an image index: 0, 1, 2, …", "n")
    if len(text.lstrip("0")) > _MAX_INDEX_DIGITS:
        return None
    return int(text)


def renditions_of(entry: Mapping[str, Any]) -> list[Rendition]:
    """The renditions of one `images[]` entry of the product JSON, in a format this API knows
    (a format added later is left out until it is listed here)."""
    found = []
    for item in entry.get("renditions") or ():
        if not isinstance(item, Mapping):
            continue
        url, width, fmt = item.get("url"), item.get("width"), item.get("format")
        if isinstance(url, str) and type(width) is int and fmt in MEDIA_SUBTYPES:
            found.append(Rendition(url, width, fmt))
    return found


# -- Accept --------------------------------------------------------------------------------------


def _elements(header: str) -> list[str]:
    """The comma-separated elements of a header's value; commas inside quoted strings (a
    parameter's value may be one) do not separate."""
    elements, start, quoted, escaped = [], 0, False, False
    for at, char in enumerate(header):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append(header[start:at])
            start = at + 1
    elements.append(header[start:])
    return [e.strip() for e in elements if e.strip()]


def _media_range(element: str) -> tuple[str, str, bool, float] | None:
    """(type, subtype, has media-type parameters, q) of one Accept element, lower-cased; None
    when it is malformed (such an element is ignored, as if not sent). Parameters after q are
    RFC 7231's accept-ext: ignored."""
    media, *parameters = element.split(";")
    kind, slash, subtype = media.strip().lower().partition("/")
    if not slash or not _TOKEN.fullmatch(kind) or not _TOKEN.fullmatch(subtype):
        return None
    if kind == "*" and subtype != "*":
        return None
    has_parameters, q = False, 1.0
    for parameter in parameters:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            if not _QVALUE.fullmatch(value):
                return None
            q = float(value)
            break
        if name.strip():
            has_parameters = True
    return kind, subtype, has_parameters, q


def weights(accept: str | None) -> dict[str, Weight]:
    """Each known format's weight under this Accept header (a missing or blank one is */*)."""
    if accept is None or not accept.strip():
        accept = "*/*"
    best: dict[str, Weight] = {fmt: Weight(0.0, None) for fmt in MEDIA_SUBTYPES}
    for element in _elements(accept):
        parsed = _media_range(element)
        if parsed is None:
            continue
        kind, subtype, has_parameters, q = parsed
        for fmt, image_subtype in MEDIA_SUBTYPES.items():
            if kind == "*":
                specificity = _ANY
            elif kind != "image":
                continue
            elif subtype == "*":
                specificity = _IMAGE_ANY
            elif subtype == image_subtype and not has_parameters:
                specificity = _EXACT
            else:
                continue
            current = best[fmt]
            # The most specific range decides; between equally specific ones, the higher q.
            if current.specificity is None or (specificity, q) > (current.specificity, current.q):
                best[fmt] = Weight(q, specificity)
    return best


def negotiate(produced: Iterable[str], accept: str | None) -> str | None:
    """The format to answer in, of those produced (None when none is)."""
    formats = [fmt for fmt in dict.fromkeys(produced) if fmt in MEDIA_SUBTYPES]
    if not formats:
        return None
    weight = weights(accept)
    acceptable = [fmt for fmt in formats if weight[fmt].acceptable]
    if acceptable:
        return min(acceptable, key=PREFERENCE.index)
    return min(formats, key=COMPATIBILITY.index)


# -- the choice ----------------------------------------------------------------------------------


def by_width(renditions: Sequence[Rendition], width: int | None) -> Rendition | None:
    """The smallest rendition at least `width` wide; the largest when none is, or without a
    width. Of equal widths, the first listed."""
    if not renditions:
        return None
    if width is not None:
        wide_enough = [r for r in renditions if r.width >= width]
        if wide_enough:
            return min(wide_enough, key=lambda r: r.width)
    return max(renditions, key=lambda r: r.width)


def choose(
    renditions: Sequence[Rendition],
    *,
    width: int | None = None,
    fmt: str | None = None,
    accept: str | None = None,
) -> Rendition | None:
    """The rendition to redirect to: in `fmt` if given, else in the format `accept` makes best
    (see the module's docstring), then by width. None when there is none (no renditions, or
    none in `fmt`)."""
    chosen = fmt if fmt is not None else negotiate((r.format for r in renditions), accept)
    return by_width([r for r in renditions if r.format == chosen], width)
