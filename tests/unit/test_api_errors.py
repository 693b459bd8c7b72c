"""Bad input through the real application: the JSON error shape and status codes.

The app here points at unreachable services: none of these requests may need one.
"""

from __future__ import annotations

import io

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from asyncpg import InternalClientError

from server.app import create_app
from server.middleware import _error_answer

GOOD = {
    "user_id": "1",
    "product_name": "Lamp",
    "product_description": "A lamp",
    "product_images": [],
    "product_price": 19.99,
}


@pytest.fixture
async def client(aiohttp_client, offline_settings):
    return await aiohttp_client(create_app(offline_settings))


async def expect_error(response, status, *words):
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "error"
    assert set(body) == {"status", "message", "details"}
    for word in words:
        assert word in body["message"]
    assert "Traceback" not in body["message"]
    return body


async def test_malformed_json_is_a_400(client):
    response = await client.post(
        "/products", data=b'{"user_id": ', headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 400, "not valid JSON")


async def test_nan_literal_is_malformed_json(client):
    response = await client.post(
        "/products",
        data=b'{"user_id": "1", "product_name": "x", "product_price": NaN}',
        headers={"Content-Type": "application/json"},
    )
    await expect_error(response, 400)


async def test_wrong_type_names_the_field(client):
    body = await expect_error(
        await client.post("/products", json={**GOOD, "product_name": 3}), 400, "product_name"
    )
    assert body["details"] == {"field": "product_name"}


async def test_missing_field_is_a_400(client):
    await expect_error(
        await client.post("/products", json={"product_name": "x", "product_price": 1}),
        400,
        "user_id",
    )


async def test_negative_price_is_a_400(client):
    await expect_error(
        await client.post("/products", json={**GOOD, "product_price": -5}), 400, "product_price"
    )


async def test_huge_number_price_is_a_400(client):
    response = await client.post(
        "/products",
        data=orjson.dumps(GOOD).replace(b"19.99", b"1e999"),
        headers={"Content-Type": "application/json"},
    )
    await expect_error(response, 400)


async def test_too_many_images_is_a_400(client):
    images = [f"https://e.com/{i}.jpg" for i in range(21)]
    await expect_error(
        await client.post("/products", json={**GOOD, "product_images": images}), 400, "at most 20"
    )


async def test_body_over_1_mib_is_a_413(client):
    big = orjson.dumps({**GOOD, "product_description": "x" * (1024 * 1024)})
    response = await client.post(
        "/products", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    await expect_error(response, 413)


async def test_wrong_content_type_is_a_415(client):
    response = await client.post(
        "/products", data=b"user_id=1", headers={"Content-Type": "text/plain"}
    )
    await expect_error(response, 415, "application/json")


async def test_unknown_route_is_a_json_404(client):
    await expect_error(await client.get("/nope"), 404, "/nope")


async def test_wrong_method_is_a_json_405(client):
    response = await client.delete("/products")
    body = await expect_error(response, 405, "DELETE")
    assert "GET" in response.headers["Allow"]
    assert body["details"] is None


async def test_product_id_that_is_not_a_positive_integer_is_a_400(client):
    await expect_error(await client.get("/products/abc"), 400, "product_id")
    await expect_error(await client.get("/products/0"), 400, "product_id")


async def test_list_without_user_id_is_a_400(client):
    await expect_error(await client.get("/products"), 400, "user_id")


@pytest.mark.parametrize("price_range", ["abc", "NaN-5", "-5-10", "50-20"])
async def test_list_with_bad_price_range_is_a_400(client, price_range):
    response = await client.get("/products", params={"user_id": "1", "price_range": price_range})
    await expect_error(response, 400, "price_range")


@pytest.mark.parametrize("limit", ["0", "201", "x", "²"])
async def test_list_with_bad_limit_is_a_400(client, limit):
    response = await client.get("/products", params={"user_id": "1", "limit": limit})
    await expect_error(response, 400, "limit")


async def test_list_with_a_nul_in_the_name_filter_is_a_400(client):
    response = await client.get("/products", params={"user_id": "1", "product_name": "a\x00"})
    await expect_error(response, 400, "product_name", "NUL")


async def test_a_nul_in_a_product_field_is_a_400(client):
    response = await client.post("/products", json={**GOOD, "product_name": "a\x00b"})
    await expect_error(response, 400, "product_name", "NUL")


async def test_list_with_bad_cursor_is_a_400(client):
    response = await client.get("/products", params={"user_id": "1", "cursor": "garbage"})
    await expect_error(response, 400, "cursor")


async def test_bad_user_body_is_a_400(client):
    await expect_error(await client.post("/users", json={"username": "a"}), 400, "email")


async def test_database_down_is_a_503_not_a_hang(client):
    response = await client.post("/products", json=GOOD)
    await expect_error(response, 503, "database")


async def test_request_id_is_echoed(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "abc-123"


async def test_request_id_is_generated_when_absent(client):
    response = await client.get("/healthz")
    assert len(response.headers["X-Request-ID"]) == 32


async def test_readyz_names_what_is_down(client):
    body = await expect_error(await client.get("/readyz"), 503, "postgres", "redis", "kafka")
    assert body["details"] == {"postgres": False, "redis": False, "kafka": False}


@pytest.mark.parametrize("key", ["../etc/passwd", "products/../../x.jpg", "a.txt", "%2e%2e/x.jpg"])
async def test_image_route_refuses_traversal(client, key):
    await expect_error(await client.get(f"/images/{key}"), 404)


async def test_image_route_serves_a_stored_file(client, offline_settings):
    path = offline_settings.local_storage_path / "products" / "1" / "abc.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xd8\xff jpeg")
    response = await client.get("/images/products/1/abc.jpg")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert await response.read() == b"\xff\xd8\xff jpeg"


async def test_blank_username_is_a_400_naming_it(client):
    response = await client.post("/users", json={"username": " \u3000 ", "email": "a@b.co"})
    body = await expect_error(response, 400, "username")
    assert body["details"] == {"field": "username"}


async def test_an_image_url_with_a_space_is_a_400_naming_it(client):
    images = ["https://e.com/a b.jpg"]
    response = await client.post("/products", json={**GOOD, "product_images": images})
    body = await expect_error(response, 400, "product_images[0]")
    assert body["details"] == {"field": "product_images[0]"}


@pytest.mark.parametrize("cursor", ["", "cDE6MA", "cDE6MQ=="])
async def test_a_cursor_the_api_did_not_write_is_a_400(client, cursor):
    response = await client.get("/products", params={"user_id": "1", "cursor": cursor})
    await expect_error(response, 400, "cursor")


async def test_an_id_above_bigint_is_a_400(client):
    await expect_error(await client.get("/products/9223372036854775808"), 400, "product_id")


def test_a_pooled_connection_postgresql_terminated_while_idle_is_a_503_not_a_500():
    """What a PostgreSQL shutting down leaves in the pool (found by the soak: 500s during a
    restart): the terminated connection's next statement raises asyncpg's InternalClientError."""
    error = InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    response = _error_answer(error, make_mocked_request("GET", "/products/1"), "request-1")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
