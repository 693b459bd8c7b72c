"""PATCH /products/{id}: a JSON merge patch (RFC 7396) of the writable fields, each checked by
the rules of creation (server/validation.py)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from server.errors import bad_request
from server.validation import (
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    json_object,
    parse_image_urls,
    parse_price,
    text_field,
)

PATCHABLE = ("product_name", "product_description", "product_price", "product_images")


@dataclass(frozen=True, slots=True)
class ProductPatch:
    """The fields a change sets; None: left as they are."""

    name: str | None = None
    description: str | None = None
    price: Decimal | None = None
    images: list[str] | None = None


def parse_product_patch(body: Any, max_images: int) -> ProductPatch:
    """Any subset of the writable fields; an unknown or read-only field, an empty patch, or
    null for a field that cannot be empty → 400 naming it. Null empties the description or the
    images (merge-patch semantics)."""
    body = json_object(body)
    if not body:
        raise bad_request(f"the patch is empty; it may set {', '.join(PATCHABLE)}")
    for field in body:
        if field not in PATCHABLE:
            raise bad_request(
                f"{field} cannot be changed; a patch may set {', '.join(PATCHABLE)}", field
            )
    for field in ("product_name", "product_price"):
        if field in body and body[field] is None:
            raise bad_request(f"{field} cannot be removed", field)
    return ProductPatch(
        name=text_field(body, "product_name", MAX_NAME_LENGTH) if "product_name" in body else None,
        description=(
            text_field(body, "product_description", MAX_DESCRIPTION_LENGTH, required=False)
            if "product_description" in body
            else None
        ),
        price=parse_price(body["product_price"]) if "product_price" in body else None,
        images=(
            parse_image_urls(body["product_images"], max_images)
            if "product_images" in body
            else None
        ),
    )
