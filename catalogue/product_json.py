"""The product's public JSON: what `GET /products/{id}` answers and what the cache stores.

Rendered once per change, by whoever read the row (the API on a miss, the worker after
processing), so both sides must produce the same bytes: this is the only place that says how.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from catalogue import image_state


class Row(Protocol):
    """A product row by column name: an asyncpg Record of db.products' columns, or a dict."""

    def __getitem__(self, column: str, /) -> Any: ...


def product_dict(row: Row) -> dict[str, Any]:
    """The product's fields; `images` is the per-source state (catalogue/image_state.py), from
    which the specification's `compressed_product_images` (the outputs shown, in source order),
    `processing_status` and `processing_errors` derive."""
    entries = orjson.loads(row["images"])
    product: dict[str, Any] = {
        "product_id": str(row["id"]),
        "user_id": str(row["user_id"]),
        "product_name": row["product_name"],
        "product_description": row["product_description"],
        "product_images": [e["source"] for e in entries],
        "compressed_product_images": [e["url"] for e in entries if e["url"] is not None],
        # NUMERIC(12,2) fits a double exactly enough that its shortest repr is the decimal.
        "product_price": float(row["product_price"]),
        "processing_status": image_state.processing_status(entries),
        "images": image_state.public(entries),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    errors = [
        {"image": e["source"], "error": e["error"]} for e in entries if e["status"] == "failed"
    ]
    if errors:
        product["processing_errors"] = errors
    return product


def render_product(row: Row) -> bytes:
    """The ready-to-send JSON of one product: what the API returns and the cache stores."""
    return orjson.dumps(product_dict(row))


def render_products(rows: Sequence[Row]) -> bytes:
    return orjson.dumps([product_dict(row) for row in rows])


# The owner is the second field of every rendered product (`product_dict` puts it there), so
# the API can tell whose a cached body is without parsing it: a bounded byte search.
_OWNER_SEARCH_END = len('{"product_id":"') + 19 + len('",')


def owner_marker(user_id: int) -> bytes:
    """What a rendered product of `user_id` holds right after its id."""
    return b',"user_id":"%d",' % user_id


def is_owned_by(body: bytes, marker: bytes) -> bool:
    """Whether a rendered product belongs to the user of `marker` (see owner_marker)."""
    return body.find(marker, 0, _OWNER_SEARCH_END + len(marker)) != -1
