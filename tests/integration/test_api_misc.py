"""Health, readiness, metrics, access log, request ids, the 500 path, and the OpenAPI document
checked against the real routes and real responses."""

from __future__ import annotations

import gc
import logging
import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from db import products as db_products
from server.app import create_app

pytestmark = pytest.mark.integration

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


async def test_healthz_answers_200(api):
    response = await api.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_answers_200_when_postgres_redis_and_kafka_answer(api):
    response = await api.get("/readyz")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "ok"
    assert body["details"] == {"postgres": True, "redis": True, "kafka": True}


async def test_metrics_count_requests_by_route_and_report_cache_and_outbox(api, user):
    created = await api.post(
        "/products", json={"user_id": user["user_id"], "product_name": "Mug", "product_price": 3}
    )
    product_id = (await created.json())["product_id"]
    assert (await api.get(f"/products/{product_id}")).headers["X-Cache"] == "HIT"
    assert (await api.get("/no/such/route")).status == 404

    response = await api.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    # The route template, not the path: one series per route whatever the ids.
    assert 'http_requests_total{method="POST",route="/products",status="201"} 1.0' in text
    assert (
        'http_requests_total{method="GET",route="/products/{product_id}",status="200"} 1.0' in text
    )
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert f"/products/{product_id}" not in text
    assert (
        'http_request_duration_seconds_count{method="GET",route="/products/{product_id}",'
        'status="200"} 1.0' in text
    )
    assert 'product_cache_lookups_total{result="HIT"} 1.0' in text
    backlog = re.search(r"^outbox_backlog (\S+)$", text, re.MULTILINE)
    assert backlog is not None, text
    assert float(backlog.group(1)) >= 0


def access_records(caplog, request_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage() == "http.request" and getattr(r, "request_id", None) == request_id
    ]


async def test_each_request_writes_one_access_log_record(api, user, caplog):
    caplog.set_level(logging.INFO, logger="server.access")
    request_id = f"test-{uuid.uuid4().hex}"
    response = await api.get(
        "/products", params={"user_id": user["user_id"]}, headers={"X-Request-ID": request_id}
    )
    assert response.status == 200
    body = await response.read()

    [record] = access_records(caplog, request_id)
    assert record.name == "server.access"
    assert record.levelno == logging.INFO
    assert record.method == "GET"
    assert record.path == "/products"
    assert record.route == "/products"
    assert record.status == 200
    assert isinstance(record.duration_ms, float)
    assert record.duration_ms >= 0
    assert record.bytes == len(body)
    assert record.cache is None


async def test_access_log_names_the_cache_result(api, user, caplog):
    caplog.set_level(logging.INFO, logger="server.access")
    created = await api.post(
        "/products", json={"user_id": user["user_id"], "product_name": "Cup", "product_price": 2}
    )
    request_id = uuid.uuid4().hex
    await api.get(
        f"/products/{(await created.json())['product_id']}", headers={"X-Request-ID": request_id}
    )
    [record] = access_records(caplog, request_id)
    assert record.route == "/products/{product_id}"
    assert record.cache == "HIT"


async def test_the_request_id_is_echoed_or_generated(api):
    given = f"abc-{uuid.uuid4().hex}"
    response = await api.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given

    first = (await api.get("/healthz")).headers["X-Request-ID"]
    second = (await api.get("/healthz")).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second
    assert first[:16] == second[:16]  # one process: its random part, then its counter


async def test_an_unexpected_exception_is_a_500_with_a_request_id_that_is_logged(
    api, user, caplog, monkeypatch
):
    async def broken(*_args, **_kwargs):
        raise RuntimeError("kaboom: secret internals")

    monkeypatch.setattr(db_products, "list_products", broken)
    caplog.set_level(logging.INFO, logger="server.access")

    response = await api.get("/products", params={"user_id": user["user_id"]})
    assert response.status == 500
    assert response.content_type == "application/json"
    text = await response.text()
    assert "kaboom" not in text
    assert "Traceback" not in text
    body = await response.json()
    assert body["status"] == "error"
    request_id = body["details"]["request_id"]
    assert request_id == response.headers["X-Request-ID"]

    errors = [
        r
        for r in caplog.records
        if r.getMessage() == "http.unhandled_error" and getattr(r, "request_id", None) == request_id
    ]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    [access] = access_records(caplog, request_id)
    assert access.status == 500

    # One bad request does not take the server down.
    assert (await api.get("/healthz")).status == 200


# -- OpenAPI ------------------------------------------------------------------------------------


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def schema_problems(spec: dict, schema: dict, value: Any, where: str = "$") -> list[str]:
    """What in `value` breaks `schema`: required fields, types, enums (a deliberately tiny
    subset of JSON Schema, enough to catch a document that drifted from the code)."""
    schema = resolve(spec, schema)
    if value is None:
        return [] if schema.get("nullable") or "type" not in schema else [f"{where} is null"]
    expected = schema.get("type")
    wrong_type = expected is not None and (
        not isinstance(value, _TYPES[expected])
        or (expected in ("integer", "number") and isinstance(value, bool))
    )
    if wrong_type:
        return [f"{where} is not of type {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where} is not one of {schema['enum']}"]
    problems = []
    if isinstance(value, dict):
        problems += [
            f"{where}.{name} is missing" for name in schema.get("required", []) if name not in value
        ]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += schema_problems(spec, sub, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += schema_problems(spec, schema["items"], item, f"{where}[{index}]")
    return problems


@pytest.fixture
async def spec(api) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    document = await response.json()
    assert document["openapi"].startswith("3.")
    return document


def test_the_schema_checker_finds_problems(spec):
    product = {"$ref": "#/components/schemas/Product"}
    problems = schema_problems(spec, product, {"product_id": 1})
    assert "$.product_id is not of type string" in problems
    assert "$.user_id is missing" in problems
    listing = {"type": "array", "items": product}
    assert "$[0].created_at is missing" in schema_problems(spec, listing, [{"product_id": "1"}])
    assert schema_problems(spec, {"$ref": "#/components/schemas/Error"}, {"status": "oops"}) == [
        "$.message is missing",
        "$.details is missing",
        "$.status is not one of ['error']",
    ]


def test_every_route_is_documented_and_every_documented_operation_exists(api, spec):
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in api.app.router.routes()
        # The last route takes what no other does, to answer 404 or 405 (server/app.py).
        if route.resource is not None and route.method != "*"
    }
    # A HEAD that aiohttp adds next to a GET is part of that GET (RFC 9110), not an operation.
    routes -= {
        ("head", path) for method, path in routes if method == "get" and ("get", path) in routes
    }
    documented = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }
    assert routes == documented


async def check_against_spec(spec, response, method: str, path: str) -> None:
    operation = spec["paths"][path][method]
    status = str(response.status)
    assert status in operation["responses"], f"{method.upper()} {path} answered {status}"
    documented = operation["responses"][status]
    media = documented.get("content", {})
    if response.content_type == "application/json" and response.content_type in media:
        schema = media[response.content_type]["schema"]
        body = await response.json()
        assert schema_problems(spec, schema, body) == [], body
    elif media:
        assert response.content_type in media, (
            f"{method.upper()} {path} {status} answered {response.content_type}"
        )
    else:
        assert not response.content_length, f"{method.upper()} {path} {status} has a body"
    for header, definition in documented.get("headers", {}).items():
        if "$ref" in definition:
            definition = spec["components"]["headers"][definition["$ref"].rsplit("/", 1)[1]]
        if definition.get("required"):
            assert header in response.headers, f"{method.upper()} {path} {status} lacks {header}"


async def test_real_responses_match_the_openapi_document(api, spec, db):
    email = f"{uuid.uuid4().hex}@example.com"
    response = await api.post("/users", json={"username": "spec", "email": email})
    await check_against_spec(spec, response, "post", "/users")
    user_id = (await response.json())["user_id"]
    response = await api.post("/users", json={"username": "spec", "email": email})
    assert response.status == 409
    await check_against_spec(spec, response, "post", "/users")

    product = {
        "user_id": user_id,
        "product_name": "Spec lamp",
        "product_images": ["https://images.example.com/spec.jpg"],
        "product_price": 9.95,
    }
    response = await api.post("/products", json=product)
    assert response.status == 201
    await check_against_spec(spec, response, "post", "/products")
    product_id = (await response.json())["product_id"]

    response = await api.post("/products", json={**product, "product_price": "free"})
    assert response.status == 400
    await check_against_spec(spec, response, "post", "/products")

    unknown_user = await db.fetchval("SELECT coalesce(max(id), 0) + 1000000 FROM users")
    response = await api.post("/products", json={**product, "user_id": str(unknown_user)})
    assert response.status == 422
    await check_against_spec(spec, response, "post", "/products")

    response = await api.get(f"/products/{product_id}")
    assert response.status == 200
    await check_against_spec(spec, response, "get", "/products/{product_id}")

    unknown_product = await db.fetchval("SELECT coalesce(max(id), 0) + 1000000 FROM products")
    response = await api.get(f"/products/{unknown_product}")
    assert response.status == 404
    await check_against_spec(spec, response, "get", "/products/{product_id}")

    response = await api.get("/products/not-a-number")
    assert response.status == 400
    await check_against_spec(spec, response, "get", "/products/{product_id}")

    await api.post("/products", json={**product, "product_name": "Second spec lamp"})
    response = await api.get("/products", params={"user_id": user_id, "limit": "1"})
    assert response.status == 200
    assert "Link" in response.headers  # more rows: the next page's link
    await check_against_spec(spec, response, "get", "/products")
    assert len(await response.json()) == 1

    response = await api.get("/products", params={"user_id": user_id, "price_range": "9-1"})
    assert response.status == 400
    await check_against_spec(spec, response, "get", "/products")

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        response = await api.get(path)
        await check_against_spec(spec, response, "get", path)

    response = await api.get("/images/no/such/image.jpg")
    assert response.status == 404
    await check_against_spec(spec, response, "get", "/images/{key}")


async def test_the_start_up_heap_is_frozen_while_serving_and_released_on_shutdown(settings):
    """Full collections under load must not walk the modules, pools and clients every time;
    with two apps in one process, the heap thaws only when the last one stops."""
    assert gc.get_freeze_count() == 0
    first = TestClient(TestServer(create_app(settings)))
    second = TestClient(TestServer(create_app(settings)))
    await first.start_server()
    await second.start_server()
    try:
        assert gc.get_freeze_count() > 10_000
        await first.close()
        assert gc.get_freeze_count() > 10_000
        assert (await second.get("/healthz")).status == 200
    finally:
        await first.close()  # again, if the test failed before; closing twice is harmless
        await second.close()
    assert gc.get_freeze_count() == 0
