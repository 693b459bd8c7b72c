"""The OpenAPI document: a function of the settings, and what it says about X-Cache matches what
GET /products/{id} does. (tests/integration/test_api_misc.py checks it against the routes and
real responses; tests/integration/test_api_schemathesis.py against the running API.)"""

from __future__ import annotations

from typing import Any

import pytest

from catalogue.cache import Lookup
from config import Settings, load_settings
from server.openapi import openapi_document
from tests.conftest import UNREACHABLE

METHODS = {"get", "put", "post", "delete", "patch"}


def settings(**env: str) -> Settings:
    return load_settings({**UNREACHABLE, **env}, None)


@pytest.fixture(scope="module")
def keyed() -> dict[str, Any]:
    return openapi_document(settings(AUTH_MODE="api_key"))


@pytest.fixture(scope="module")
def open_contract() -> dict[str, Any]:
    return openapi_document(settings(AUTH_MODE="off"))


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def x_cache(document: dict[str, Any]) -> dict[str, Any]:
    header: dict[str, Any] = document["paths"]["/products/{product_id}"]["get"]["responses"]["200"][
        "headers"
    ]["X-Cache"]
    return header


def test_x_cache_lists_every_value_the_read_path_answers(keyed) -> None:
    assert x_cache(keyed)["schema"]["enum"] == ["HIT", *(lookup.value for lookup in Lookup)]


def test_a_hit_is_documented_as_from_either_cache_tier(keyed) -> None:
    """A product held in the API process's memory answers HIT too, not only one from Redis."""
    description = x_cache(keyed)["description"]
    hit = description[description.index("HIT (") : description.index(")")]
    assert "Redis" in hit
    assert "memory" in hit


def test_with_api_keys_every_operation_but_the_open_ones_needs_the_bearer_scheme(keyed) -> None:
    assert keyed["components"]["securitySchemes"]["ApiKey"] == {
        **keyed["components"]["securitySchemes"]["ApiKey"],
        "type": "http",
        "scheme": "bearer",
    }
    assert keyed["security"] == [{"ApiKey": []}]
    open_routes = {"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"}
    for name, operation in operations(keyed).items():
        if name in open_routes or name == "GET /images/{key}":
            assert operation["security"] == [], name
            assert "401" not in operation["responses"], name
            continue
        assert {"401", "429"} <= set(operation["responses"]), name
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
        assert operation["responses"]["429"]["headers"]["Retry-After"]["required"]
        for response in operation["responses"].values():
            assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
                response["headers"]
            ), name


def test_open_sign_up_and_public_reads_make_the_key_optional() -> None:
    document = openapi_document(
        settings(AUTH_MODE="api_key", USER_SIGNUP="open", PRODUCT_READS="public")
    )
    ops = operations(document)
    for name in ("POST /users", "GET /products", "GET /products/{product_id}"):
        assert ops[name]["security"] == [{}, {"ApiKey": []}], name
    assert ops["POST /products"]["security"] == [{"ApiKey": []}]
    assert "403" not in ops["GET /products"]["responses"]  # anyone's products may be read


def test_admin_sign_up_needs_a_key_and_refuses_others_with_403() -> None:
    ops = operations(openapi_document(settings(AUTH_MODE="api_key", USER_SIGNUP="admin")))
    assert ops["POST /users"]["security"] == [{"ApiKey": []}]
    assert "403" in ops["POST /users"]["responses"]


def test_the_open_contract_has_no_keys_no_limits_and_names_the_user(open_contract) -> None:
    assert "security" not in open_contract
    assert "securitySchemes" not in open_contract["components"]
    assert not any(path.startswith("/users/{user_id}/api-keys") for path in open_contract["paths"])
    for name, operation in operations(open_contract).items():
        assert "security" not in operation, name
        assert not {"401", "403", "429"} & set(operation["responses"]), name
        for response in operation["responses"].values():
            assert "RateLimit-Limit" not in response["headers"], name
    schemas = open_contract["components"]["schemas"]
    assert "user_id" in schemas["NewProduct"]["required"]
    assert "api_key" not in schemas["User"]["properties"]
    listing = operations(open_contract)["GET /products"]["parameters"]
    assert next(p for p in listing if p["name"] == "user_id")["required"]


def test_with_keys_user_id_is_optional_and_a_new_user_gets_a_key(keyed) -> None:
    schemas = keyed["components"]["schemas"]
    assert "user_id" not in schemas["NewProduct"]["required"]
    assert "api_key" in schemas["User"]["required"]
    listing = operations(keyed)["GET /products"]["parameters"]
    assert not next(p for p in listing if p["name"] == "user_id")["required"]


def test_max_images_follows_the_setting() -> None:
    document = openapi_document(settings(MAX_IMAGES_PER_PRODUCT="3"))
    schemas = document["components"]["schemas"]
    assert schemas["NewProduct"]["properties"]["product_images"]["maxItems"] == 3
    assert schemas["ProductPatch"]["properties"]["product_images"]["maxItems"] == 3


def test_creates_take_an_idempotency_key_and_say_when_they_replay(keyed) -> None:
    for name in ("POST /users", "POST /products"):
        operation = operations(keyed)[name]
        (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header"
        assert (header["schema"]["minLength"], header["schema"]["maxLength"]) == (1, 255)
        assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
        assert {"409", "422"} <= set(operation["responses"])


def test_a_created_product_links_to_its_reads_and_changes(keyed) -> None:
    links = operations(keyed)["POST /products"]["responses"]["201"]["links"]
    assert links["GetProduct"] == {
        "operationId": "getProduct",
        "parameters": {"product_id": "$response.body#/product_id"},
    }
    ids = {op["operationId"] for op in operations(keyed).values()}
    for document in (keyed, openapi_document(settings(AUTH_MODE="off"))):
        for operation in operations(document).values():
            for response in operation["responses"].values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in ids


def test_every_response_names_its_request_id(keyed, open_contract) -> None:
    for document in (keyed, open_contract):
        for name, operation in operations(document).items():
            for status, response in operation["responses"].items():
                assert "X-Request-ID" in response["headers"], (name, status)
