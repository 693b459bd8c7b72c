"""GET /products/{id}/images/{n} on the real app and stack: the redirect each browser gets, the
width and format= choices, its 400s and 404s, the access rules of a product read, and its
headers, checked against the OpenAPI document.

A product is created through the API; its images then get renditions as the worker writes
them (db.products.save_images, the worker's UPDATE), and its cached JSON is refreshed the way
the worker refreshes it (ProductCache.put_fresh: a new version in Redis, and the invalidation
of every process's copy), so what the endpoint reads is what it would read in production.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from catalogue import image_state
from catalogue.product_json import render_product
from config.rates import Rate
from db import products as db_products
from server.app import create_app
from server.keys import CACHE

from .conftest import wait_for
from .test_api_access import (  # noqa: F401 (no_key_in_the_logs: autouse)
    ADMIN,
    access_api,
    assert_401,
    create_product,
    new_user,
    no_key_in_the_logs,
)
from .test_api_misc import check_against_spec

pytestmark = pytest.mark.integration

LADDER = (320, 640, 1024, 1600)
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
SOURCES = ["https://shop.example/lamp.jpg", "https://shop.example/lamp-side.jpg"]

# The Accept of an <img> request in each browser.
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
SAFARI = (
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
    "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
)
SAFARI_14 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
OLD_BROWSER = "image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5"  # IE 11


def rendition(product_id: str, source: str, fmt: str, width: int) -> dict[str, Any]:
    """One rendition as the worker records it in products.images (with its storage key)."""
    digest = hashlib.sha256(f"{source}:{fmt}:{width}".encode()).hexdigest()[:16]
    key = f"products/{product_id}/{digest}-{width}.{EXTENSIONS[fmt]}"
    return {
        "key": key,
        "url": f"http://127.0.0.1:8080/images/{key}",
        "width": width,
        "height": width * 3 // 4,
        "format": fmt,
        "bytes": width * 40,
    }


def ladder(product_id: str, source: str, formats: Sequence[str]) -> list[dict[str, Any]]:
    return [rendition(product_id, source, f, w) for f in formats for w in LADDER]


def url(product_id: str, fmt: str, width: int, source: str = SOURCES[0]) -> str:
    return str(rendition(product_id, source, fmt, width)["url"])


async def write_images(api: TestClient, db: Any, product_id: str, change: Any) -> None:
    """`change(entries)` written as the worker writes its results: the row's images, one more
    version, and the cached JSON refreshed with an invalidation to every API process."""
    async with db.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT images::text AS images, images_revision FROM products WHERE id = $1",
            int(product_id),
        )
        entries = change(orjson.loads(stored["images"]))
        row = await db_products.save_images(
            conn,
            int(product_id),
            entries,
            status=image_state.processing_status(entries),
            revision=stored["images_revision"],
        )
    assert await api.app[CACHE].put_fresh(row["id"], row["version"], render_product(row))


def ready(product_id: str, formats: Sequence[str], *, only: int | None = None) -> Any:
    """A change making every entry (or entry `only`) ready with a ladder in `formats`."""

    def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, entry in enumerate(entries):
            if only is None or index == only:
                renditions = ladder(product_id, entry["source"], formats)
                # The output shown: the largest JPEG (the largest of the first format without).
                shown = rendition(product_id, entry["source"], formats[0], LADDER[-1])
                if "jpeg" in formats:
                    shown = rendition(product_id, entry["source"], "jpeg", LADDER[-1])
                entry.update(
                    status="ready", url=shown["url"], key=shown["key"], renditions=renditions
                )
        return entries

    return change


async def product_with_renditions(
    api: TestClient,
    db: Any,
    headers: dict[str, str],
    formats: Sequence[str] = ("jpeg", "webp", "avif"),
    sources: Sequence[str] = SOURCES,
) -> str:
    product_id = (await create_product(api, headers, product_images=list(sources)))["product_id"]
    await write_images(api, db, product_id, ready(product_id, formats))
    return str(product_id)


async def redirect(
    api: TestClient, path: str, headers: dict[str, str], **params: str
) -> tuple[int, str | None]:
    response = await api.get(path, headers=headers, params=params, allow_redirects=False)
    return response.status, response.headers.get("Location")


@pytest.fixture
async def api(settings) -> AsyncIterator[TestClient]:
    async with access_api(settings) as client:
        yield client


@pytest.fixture
async def spec(api) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    document: dict[str, Any] = await response.json()
    return document


@pytest.fixture
async def owner(api) -> dict[str, str]:
    _, headers = await new_user(api)
    return headers


PATH = "/products/{product_id}/images/{n}"


# -- browsers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "all_three", "jpeg_and_webp"),
    [
        (CHROME, "avif", "webp"),
        (FIREFOX, "avif", "webp"),
        (SAFARI, "avif", "webp"),
        # Wildcards allow every format: the best produced (such pages link format=jpeg).
        (SAFARI_14, "avif", "webp"),
        (OLD_BROWSER, "avif", "webp"),
        (None, "avif", "webp"),  # no Accept: every format allowed
    ],
)
async def test_each_client_is_sent_to_the_best_format_its_accept_allows(
    api, db, owner, accept, all_three, jpeg_and_webp
):
    modern = await product_with_renditions(api, db, owner)
    default = await product_with_renditions(api, db, owner, formats=("jpeg", "webp"))
    headers = {**owner, **({"Accept": accept} if accept is not None else {})}
    for product_id, fmt in ((modern, all_three), (default, jpeg_and_webp)):
        got = await redirect(api, f"/products/{product_id}/images/0", headers, w="640")
        assert got == (302, url(product_id, fmt, 640))


async def test_q_0_excludes_a_format_and_nothing_acceptable_falls_back_to_jpeg(api, db, owner):
    product_id = await product_with_renditions(api, db, owner)
    path = f"/products/{product_id}/images/0"
    no_avif = {**owner, "Accept": "image/avif;q=0,image/webp,*/*;q=0.8"}
    assert await redirect(api, path, no_avif) == (302, url(product_id, "webp", 1600))
    html = {**owner, "Accept": "text/html"}
    assert await redirect(api, path, html) == (302, url(product_id, "jpeg", 1600))


async def test_without_jpeg_the_fallback_is_webp(api, db, owner):
    product_id = await product_with_renditions(api, db, owner, formats=("webp", "avif"))
    headers = {**owner, "Accept": "image/png"}
    got = await redirect(api, f"/products/{product_id}/images/0", headers, w="100")
    assert got == (302, url(product_id, "webp", 320))


# -- widths, images and format= ------------------------------------------------------------------


WIDTHS = [("1", 320), ("320", 320), ("321", 640), ("640", 640), ("1000", 1024), ("1600", 1600)]


async def test_the_smallest_rendition_at_least_w_wide_else_the_largest(api, db, owner):
    product_id = await product_with_renditions(api, db, owner)
    path, headers = f"/products/{product_id}/images/0", {**owner, "Accept": CHROME}
    for w, width in [*WIDTHS, ("1601", 1600), ("10000", 1600), ("0640", 640)]:
        assert await redirect(api, path, headers, w=w) == (302, url(product_id, "avif", width))
    assert await redirect(api, path, headers) == (302, url(product_id, "avif", 1600))


async def test_n_chooses_the_image(api, db, owner):
    product_id = await product_with_renditions(api, db, owner)
    got = await redirect(api, f"/products/{product_id}/images/1", owner, w="300", format="jpeg")
    assert got == (302, url(product_id, "jpeg", 320, SOURCES[1]))


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
async def test_format_overrides_negotiation(api, db, owner, fmt):
    product_id = await product_with_renditions(api, db, owner)
    headers = {**owner, "Accept": OLD_BROWSER if fmt != "jpeg" else CHROME}
    got = await redirect(api, f"/products/{product_id}/images/0", headers, w="700", format=fmt)
    assert got == (302, url(product_id, fmt, 1024))


async def test_a_format_not_produced_for_the_image_is_404_naming_format(api, db, owner, spec):
    product_id = await product_with_renditions(api, db, owner, formats=("jpeg", "webp"))
    response = await api.get(
        f"/products/{product_id}/images/0", params={"format": "avif"}, headers=owner
    )
    assert response.status == 404
    body = await response.json()
    assert body["details"] == {"field": "format", "produced": ["jpeg", "webp"]}
    assert "avif" in body["message"]
    await check_against_spec(spec, response, "get", PATH)


async def test_the_redirect_follows_the_products_changes(api, db, owner):
    """A reprocess under other settings gives the image new renditions: the same URL leads to
    them at once (the cached product is refreshed; the redirect is not cached for a while)."""
    product_id = await product_with_renditions(api, db, owner, formats=("jpeg",))
    path, headers = f"/products/{product_id}/images/0", {**owner, "Accept": CHROME}
    assert await redirect(api, path, headers) == (302, url(product_id, "jpeg", 1600))
    await write_images(api, db, product_id, ready(product_id, ("jpeg", "webp")))

    async def moved() -> bool:
        return await redirect(api, path, headers) == (302, url(product_id, "webp", 1600))

    await wait_for(moved, timeout_s=5)  # the invalidation reaches this process's copy


# -- headers -------------------------------------------------------------------------------------


async def test_the_redirect_varies_on_accept_is_not_cached_and_is_a_budgeted_read(
    api, db, owner, spec
):
    product_id = await product_with_renditions(api, db, owner)
    for params in ({"w": "640"}, {"w": "640", "format": "webp"}):
        response = await api.get(
            f"/products/{product_id}/images/0",
            params=params,
            headers={**owner, "Accept": FIREFOX},
            allow_redirects=False,
        )
        assert response.status == 302
        assert response.headers["Vary"] == "Accept"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["Location"].startswith("http://127.0.0.1:8080/images/products/")
        assert await response.read() == b""
        assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
            response.headers
        )
        await check_against_spec(spec, response, "get", PATH)


# -- 404s ----------------------------------------------------------------------------------------


async def test_an_index_past_the_last_image_is_404(api, db, owner, spec):
    product_id = await product_with_renditions(api, db, owner)
    for n, which in (("2", "2"), ("0999", "999"), ("12345678901234567890", "at that index")):
        response = await api.get(f"/products/{product_id}/images/{n}", headers=owner)
        assert response.status == 404
        body = await response.json()
        assert body["details"] == {"field": "n"}
        assert body["message"] == f"product {product_id} has no image {which}"
    await check_against_spec(spec, response, "get", PATH)
    no_images = (await create_product(api, owner))["product_id"]
    assert (await api.get(f"/products/{no_images}/images/0", headers=owner)).status == 404


async def test_a_missing_product_is_404(api, owner, spec):
    response = await api.get("/products/999999999/images/0", headers=owner)
    assert response.status == 404
    assert (await response.json())["message"] == "product 999999999 not found"
    await check_against_spec(spec, response, "get", PATH)


async def test_an_image_without_renditions_yet_is_404_saying_why(api, db, owner, spec):
    product_id = (await create_product(api, owner, product_images=SOURCES))["product_id"]
    pending = await api.get(f"/products/{product_id}/images/0", headers=owner)
    assert pending.status == 404
    body = await pending.json()
    assert body["message"] == (
        f"image 0 of product {product_id} has no renditions yet: it is still being processed"
    )
    assert body["details"] == {"field": "n", "status": "pending", "error": None}
    await check_against_spec(spec, pending, "get", PATH)

    def second_failed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries[1].update(status="failed", error="not_an_image")
        return ready(product_id, ("jpeg",), only=0)(entries)

    await write_images(api, db, product_id, second_failed)

    async def failed_answer() -> Any:
        response = await api.get(f"/products/{product_id}/images/1", headers=owner)
        body = await response.json()
        return body if body["details"]["status"] == "failed" else None

    body = await wait_for(failed_answer, timeout_s=5)
    assert body["message"].endswith("has no renditions yet: its processing failed")
    assert body["details"]["error"] == "not_an_image"
    got = await redirect(api, f"/products/{product_id}/images/0", owner)
    assert got == (302, url(product_id, "jpeg", 1600))


async def test_an_image_processed_before_renditions_existed_is_404_until_reprocessed(
    api, db, owner
):
    product_id = (await create_product(api, owner, product_images=SOURCES[:1]))["product_id"]

    def legacy(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = f"products/{product_id}/legacy.jpg"
        entries[0].update(status="ready", key=key, url=f"http://127.0.0.1:8080/images/{key}")
        return entries

    await write_images(api, db, product_id, legacy)
    response = await api.get(f"/products/{product_id}/images/0", headers=owner)
    assert response.status == 404
    body = await response.json()
    assert body["details"]["status"] == "ready"
    assert body["message"].endswith(
        "processed before renditions were made (a reprocess makes them)"
    )


# -- 400s ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "params", "field"),
    [
        ("0", {"w": "0"}, "w"),
        ("0", {"w": "-5"}, "w"),
        ("0", {"w": "abc"}, "w"),
        ("0", {"w": "64.5"}, "w"),
        ("0", {"w": "10001"}, "w"),
        ("0", {"w": ""}, "w"),
        ("0", {"format": "gif"}, "format"),
        ("0", {"format": "JPEG"}, "format"),
        ("-1", {}, "n"),
        ("first", {}, "n"),
    ],
)
async def test_bad_input_is_400_naming_the_field(api, db, owner, spec, n, params, field):
    product_id = await product_with_renditions(api, db, owner)
    response = await api.get(f"/products/{product_id}/images/{n}", params=params, headers=owner)
    assert response.status == 400
    body = await response.json()
    assert body["details"] == {"field": field}
    assert field in body["message"]
    await check_against_spec(spec, response, "get", PATH)


async def test_a_bad_product_id_is_400(api, owner):
    response = await api.get("/products/lamp/images/0", headers=owner)
    assert response.status == 400
    assert (await response.json())["details"] == {"field": "product_id"}


# -- access --------------------------------------------------------------------------------------


async def test_without_a_key_401(api, db, owner, spec):
    product_id = await product_with_renditions(api, db, owner)
    response = await api.get(f"/products/{product_id}/images/0", allow_redirects=False)
    assert_401(response, await response.json())
    await check_against_spec(spec, response, "get", PATH)


def comparable(response: Any, text: str, product_id: str) -> tuple[Any, ...]:
    """What a client sees of an answer, with the id it asked for taken out."""
    ignored = {"X-Request-ID", "Date", "Content-Length", "RateLimit-Remaining", "RateLimit-Reset"}
    headers = sorted((k, v) for k, v in response.headers.items() if k not in ignored)
    return response.status, text.replace(product_id, "ID"), headers


@pytest.mark.parametrize(("query", "status"), [("", 404), ("?w=640&format=webp", 404)])
async def test_another_users_product_is_404_exactly_like_a_missing_one(
    api, db, owner, query, status
):
    _, other = await new_user(api)
    theirs = await product_with_renditions(api, db, other)
    missing = str(int(theirs) + 1_000_000)
    seen = []
    # Theirs is cached (its refresh stored it); the missing id gets cached too: ask twice.
    for product_id in (theirs, missing, theirs, missing):
        response = await api.get(
            f"/products/{product_id}/images/0{query}", headers=owner, allow_redirects=False
        )
        seen.append(comparable(response, await response.text(), product_id))
    assert seen[0][0] == status
    assert seen[0] == seen[1] == seen[2] == seen[3]


async def test_bad_input_is_refused_before_any_product_is_read(api, db, owner):
    """A 400 for a bad w says nothing of the product: the same for theirs and a missing one."""
    _, other = await new_user(api)
    theirs = await product_with_renditions(api, db, other)
    missing = str(int(theirs) + 1_000_000)
    seen = []
    for product_id in (theirs, missing):
        response = await api.get(f"/products/{product_id}/images/0?w=0", headers=owner)
        seen.append(comparable(response, await response.text(), product_id))
    assert seen[0][0] == 400
    assert seen[0] == seen[1]


async def test_an_admin_key_is_redirected_for_any_users_product(api, db, owner):
    product_id = await product_with_renditions(api, db, owner)
    got = await redirect(api, f"/products/{product_id}/images/0", {**ADMIN, "Accept": CHROME})
    assert got == (302, url(product_id, "avif", 1600))


async def test_public_reads_redirect_without_a_key_and_for_another_users_key(settings, db):
    async with access_api(settings, product_reads="public") as api:
        _, owner = await new_user(api)
        _, other = await new_user(api)
        product_id = await product_with_renditions(api, db, owner)
        for headers in ({"Accept": SAFARI}, {**other, "Accept": SAFARI}):
            got = await redirect(api, f"/products/{product_id}/images/0", headers, w="500")
            assert got == (302, url(product_id, "avif", 640))


async def test_image_redirects_spend_the_read_budget(settings, db):
    async with access_api(settings, rate_limit_reads=Rate(3, 3600.0)) as api:
        _, owner = await new_user(api)
        product_id = await product_with_renditions(api, db, owner)
        path = f"/products/{product_id}/images/0"
        assert (await api.get(f"/products/{product_id}", headers=owner)).status == 200
        assert (await redirect(api, path, owner))[0] == 302
        response = await api.get(path, headers=owner, allow_redirects=False)
        assert response.status == 302
        assert response.headers["RateLimit-Remaining"] == "0"
        refused = await api.get(path, headers=owner, allow_redirects=False)
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 1


async def test_with_auth_off_anyone_is_redirected(settings, db):
    client = TestClient(TestServer(create_app(settings)))  # the session's AUTH_MODE=off
    await client.start_server()
    try:
        email = f"{uuid.uuid4().hex}@example.com"
        user = await (await client.post("/users", json={"username": "u", "email": email})).json()
        response = await client.post(
            "/products",
            json={
                "user_id": user["user_id"],
                "product_name": "Lamp",
                "product_price": 5,
                "product_images": SOURCES[:1],
            },
        )
        product_id = (await response.json())["product_id"]
        await write_images(client, db, product_id, ready(product_id, ("jpeg", "webp")))
        got = await redirect(client, f"/products/{product_id}/images/0", {"Accept": CHROME})
        assert got == (302, url(product_id, "webp", 1600))
    finally:
        await client.close()
