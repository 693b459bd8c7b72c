"""What the OpenAPI document says about X-Cache matches what GET /products/{id} does."""

from __future__ import annotations

from typing import Any

from catalogue.cache import Lookup
from server.openapi import SPEC


def x_cache() -> dict[str, Any]:
    header: dict[str, Any] = SPEC["paths"]["/products/{product_id}"]["get"]["responses"]["200"][
        "headers"
    ]["X-Cache"]
    return header


def test_x_cache_lists_every_value_the_read_path_answers() -> None:
    assert x_cache()["schema"]["enum"] == ["HIT", *(lookup.value for lookup in Lookup)]


def test_a_hit_is_documented_as_from_either_cache_tier() -> None:
    """A product held in the API process's memory answers HIT too, not only one from Redis."""
    description = x_cache()["description"]
    hit = description[description.index("HIT (") : description.index(")")]
    assert "Redis" in hit
    assert "memory" in hit
