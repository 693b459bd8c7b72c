"""The operator console over HTTP on the real stack: sign-in, the session cookie, CSRF, the
products page and its search, and every bad input of its forms."""

from __future__ import annotations

import hashlib

import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from db import webhooks as webhooks_db
from server.console.sessions import COOKIE, SESSION_PREFIX

from .console_helpers import csrf_of, running_stack_env, sign_in
from .test_api_access import ADMIN, ADMIN_KEY, access_api, create_product, new_user
from .test_webhooks import SIGNING_KEY

pytestmark = pytest.mark.integration

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    return running_stack_env()


def assert_secured(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_the_sign_in_page_is_html_with_the_security_headers(settings):
    async with access_api(settings) as api:
        response = await api.get("/console/sign-in")
        assert response.status == 200
        assert response.content_type == "text/html"
        assert 'type="password" name="admin_key"' in await response.text()
        assert_secured(response)


async def test_pages_without_a_session_send_the_browser_to_sign_in(settings):
    async with access_api(settings) as api:
        for path in ("/console", "/console/products"):
            response = await api.get(path, allow_redirects=False)
            assert response.status == 303
        assert response.headers["Location"] == "/console/sign-in"
        assert_secured(response)


async def test_a_bad_key_is_a_401_page_and_no_cookie(settings):
    async with access_api(settings) as api:
        _, user_headers = await new_user(api)
        user_key = user_headers["Authorization"].removeprefix("Bearer ")
        for key in ("", "adm-wrong", ADMIN_KEY + "x", user_key, "é" * 40):
            response = await api.post(
                "/console/sign-in", data={"admin_key": key}, allow_redirects=False
            )
            assert response.status == 401, key
            assert response.content_type == "text/html"
            assert "not an admin key" in await response.text()
            assert_secured(response)
        no_field = await api.post("/console/sign-in", data={}, allow_redirects=False)
        assert no_field.status == 401
        assert COOKIE not in {cookie.key for cookie in api.session.cookie_jar}


async def test_signing_in_sets_a_strict_http_only_cookie_whose_hash_alone_is_stored(settings):
    async with access_api(settings) as api:
        response = await api.post(
            "/console/sign-in", data={"admin_key": ADMIN_KEY}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/console/products"
        header = response.headers["Set-Cookie"]
        assert "HttpOnly" in header
        assert "SameSite=Strict" in header
        assert "Path=/console" in header
        assert "Secure" not in header  # plain HTTP here; Secure under TLS (request.secure)
        token = response.cookies[COOKIE].value
        client = redis.Redis.from_url(settings.redis_url)
        try:
            stored = [key.decode() async for key in client.scan_iter(match=SESSION_PREFIX + "*")]
            digest = SESSION_PREFIX + hashlib.sha256(token.encode()).hexdigest()
            assert digest in stored
            assert not [key for key in stored if token in key]
            record = await client.get(digest)
            assert ADMIN_KEY.encode() not in record
            assert token.encode() not in record
            assert 0 < await client.ttl(digest) <= 8 * 3600
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_sign_in_posted_from_another_site_is_refused(settings, headers):
    async with access_api(settings) as api:
        response = await api.post(
            "/console/sign-in",
            data={"admin_key": ADMIN_KEY},
            headers=headers,
            allow_redirects=False,
        )
        assert response.status == 403
        assert COOKIE not in {cookie.key for cookie in api.session.cookie_jar}


async def test_sign_out_needs_the_sessions_csrf_token_and_ends_the_session(settings):
    async with access_api(settings) as api:
        csrf = await sign_in(api, ADMIN_KEY)
        for form in ({}, {"csrf_token": "x" * len(csrf)}, {"csrf_token": csrf[:-1]}):
            refused = await api.post("/console/sign-out", data=form, allow_redirects=False)
            assert refused.status == 403, form
            assert "CSRF" in await refused.text()
            assert_secured(refused)
        # Still signed in after the refusals.
        assert (await api.get("/console/products", allow_redirects=False)).status == 200
        token = next(c.value for c in api.session.cookie_jar if c.key == COOKIE)
        out = await api.post("/console/sign-out", data={"csrf_token": csrf}, allow_redirects=False)
        assert out.status == 303
        assert out.headers["Location"] == "/console/sign-in"
        # The record is gone: the old cookie signs nobody in any more.
        api.session.cookie_jar.update_cookies({COOKIE: token})
        again = await api.get("/console/products", allow_redirects=False)
        assert again.status == 303
        assert (
            await api.post("/console/sign-out", data={"csrf_token": csrf}, allow_redirects=False)
        ).status == 401


async def test_the_products_page_finds_products_by_user_name_and_status_escaped(settings):
    async with access_api(settings) as api:
        user_id, headers = await new_user(api)
        other_id, other_headers = await new_user(api)
        mine = await create_product(api, headers, product_name="<script>alert(1)</script> lamp")
        theirs = await create_product(api, other_headers, product_name="Chair")
        await sign_in(api, ADMIN_KEY)

        async def shown(**query: str) -> str:
            response = await api.get("/console/products", params=query)
            assert response.status == 200
            assert_secured(response)
            return await response.text()

        page = await shown(user_id=user_id)
        assert f'data-product-id="{mine["product_id"]}"' in page
        assert f'data-product-id="{theirs["product_id"]}"' not in page
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; lamp" in page
        by_name = await shown(name="chai")
        assert f'data-product-id="{theirs["product_id"]}"' in by_name
        assert f'data-product-id="{mine["product_id"]}"' not in by_name
        # Without images a product is done at once.
        done = await shown(user_id=other_id, status="done")
        assert f'data-product-id="{theirs["product_id"]}"' in done
        assert f'data-product-id="{theirs["product_id"]}"' not in await shown(
            user_id=other_id, status="failed"
        )
        assert csrf_of(page)  # the sign-out form on every page


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"user_id": "abc"}, "user_id"),
        ({"user_id": "0"}, "user_id"),
        ({"user_id": "9" * 30}, "user_id"),
        ({"status": "bogus"}, "status"),
        ({"name": "n" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_search_fields_are_a_400_page_naming_the_field(settings, query, field):
    async with access_api(settings) as api:
        await sign_in(api, ADMIN_KEY)
        response = await api.get("/console/products", params=query)
        assert response.status == 400
        assert response.content_type == "text/html"
        assert field in await response.text()
        assert_secured(response)


async def test_the_console_is_not_in_the_api_document(settings):
    async with access_api(settings) as api:
        document = await (await api.get("/openapi.json")).json()
        assert not [path for path in document["paths"] if path.startswith("/console")]
        # The bearer key of the API does not open console pages: they take the session only.
        response = await api.get("/console/products", headers=ADMIN, allow_redirects=False)
        assert response.status == 303


async def test_the_webhooks_page_shows_endpoints_and_their_recent_deliveries(settings, db):
    async with access_api(
        settings, webhook_allow_loopback_urls=True, webhook_signing_key=SIGNING_KEY
    ) as api:
        user_id, headers = await new_user(api)
        other_id, other_headers = await new_user(api)
        url = "http://127.0.0.1:9/hook?a=1&b=<x>"
        created = await api.post(
            "/webhooks", json={"url": url, "events": ["product.processed"]}, headers=headers
        )
        assert created.status == 201, await created.text()
        hook = await created.json()
        theirs = await api.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/other"}, headers=other_headers
        )
        assert theirs.status == 201
        # A delivery as the dispatcher queues one for an event, and one failed attempt of it.
        async with db.acquire() as conn:
            queued = await webhooks_db.queue_deliveries(
                conn,
                user_id=int(user_id),
                event_id="evt-console-1",
                event_type="product.processed",
                body="{}",
                traceparent=None,
            )
            assert queued == 1
            delivery_id = await conn.fetchval(
                "SELECT id FROM webhook_deliveries WHERE event_id = 'evt-console-1'"
            )
            await webhooks_db.record_attempt(
                conn,
                delivery_id=delivery_id,
                webhook_id=int(hook["webhook_id"]),
                attempt=1,
                status_code=None,
                error="connect: <refused>",
                duration_ms=1.5,
                delivered=False,
                retry_in_s=60,
            )
        await sign_in(api, ADMIN_KEY)
        response = await api.get("/console/webhooks", params={"user_id": user_id})
        assert response.status == 200
        assert_secured(response)
        page = await response.text()
        assert f'data-webhook-id="{hook["webhook_id"]}"' in page
        assert "http://127.0.0.1:9/hook?a=1&amp;b=&lt;x&gt;" in page
        assert 'data-testid="delivery"' in page
        assert "evt-console-1" in page
        assert "connect: &lt;refused&gt;" in page
        assert "secret" not in page.lower()
        assert f'data-webhook-id="{(await theirs.json())["webhook_id"]}"' not in page
        everyone = await (await api.get("/console/webhooks")).text()
        assert f'data-webhook-id="{(await theirs.json())["webhook_id"]}"' in everyone
        assert other_id


@pytest.mark.parametrize(("query", "field"), [({"user_id": "x"}, "user_id"), ({"url": "y"}, "url")])
async def test_bad_webhook_search_fields_are_a_400_page_naming_the_field(settings, query, field):
    async with access_api(settings) as api:
        await sign_in(api, ADMIN_KEY)
        response = await api.get("/console/webhooks", params=query)
        assert response.status == 400
        assert field in await response.text()
        assert_secured(response)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"product_id": "abc"}, "product_id"),
        ({"product_id": "0"}, "product_id"),
        ({"product_id": ""}, "product_id"),
        ({"topic": "jobs"}, "topic"),
    ],
)
async def test_bad_replay_forms_are_a_400_naming_the_field(settings, form, field):
    async with access_api(settings) as api:
        csrf = await sign_in(api, ADMIN_KEY)
        for accept, kind in (("text/html", "text/html"), ("application/json", "application/json")):
            response = await api.post(
                "/console/dead-letters/replay",
                data={"csrf_token": csrf, **form},
                headers={"Accept": accept},
                allow_redirects=False,
            )
            assert response.status == 400
            assert response.content_type == kind
            assert field in await response.text()
            assert_secured(response)


async def test_a_replay_without_the_csrf_token_is_refused_and_replays_nothing(settings):
    async with access_api(settings) as api:
        csrf = await sign_in(api, ADMIN_KEY)
        for form in ({}, {"csrf_token": csrf + "x"}):
            response = await api.post(
                "/console/dead-letters/replay",
                data=form,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            )
            assert response.status == 403
            assert "CSRF" in (await response.json())["message"]
        api.session.cookie_jar.clear()
        signed_out = await api.post(
            "/console/dead-letters/replay", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert signed_out.status == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "ids"),
        ({"ids": ""}, "ids"),
        ({"ids": "1,x"}, "ids"),
        ({"ids": ",".join(["1"] * 201)}, "ids"),
        ({"ids": "1", "more": "2"}, "more"),
    ],
)
async def test_bad_status_queries_are_a_400_naming_the_field(settings, query, field):
    async with access_api(settings) as api:
        await sign_in(api, ADMIN_KEY)
        response = await api.get(
            "/console/products/status", params=query, headers={"Accept": "application/json"}
        )
        assert response.status == 400
        assert (await response.json())["details"] == {"field": field}


async def test_the_status_feed_answers_the_products_that_exist(settings):
    async with access_api(settings) as api:
        _, headers = await new_user(api)
        product = await create_product(api, headers)
        await sign_in(api, ADMIN_KEY)
        response = await api.get(
            "/console/products/status", params={"ids": f"{product['product_id']},999999999"}
        )
        assert response.status == 200
        assert await response.json() == {product["product_id"]: "done"}
        assert_secured(response)


METRICS = """worker_images_total{outcome="done"} 3.0
worker_inflight_jobs 2.0
worker_stage_seconds_sum{stage="compress"} 0.3
worker_stage_seconds_count{stage="compress"} 3.0
"""


async def test_the_pipeline_feed_sums_the_workers_that_answer_and_names_one_that_does_not(
    settings,
):
    async def serve_metrics(_request: web.Request) -> web.Response:
        return web.Response(text=METRICS)

    metrics = web.Application()
    metrics.router.add_get("/metrics", serve_metrics)
    worker = TestServer(metrics, host="127.0.0.1")
    await worker.start_server()
    answering_at = f"http://127.0.0.1:{worker.port}/metrics"
    addresses = f"127.0.0.1:{worker.port},127.0.0.1:9"  # the second: nothing listens there
    try:
        async with access_api(settings, console_worker_metrics=addresses) as api:
            await sign_in(api, ADMIN_KEY)
            page = await api.get("/console/pipeline")
            assert page.status == 200
            assert_secured(page)
            assert '<script src="/console/static/console.js">' in await page.text()
            response = await api.get(
                "/console/pipeline.json", headers={"Accept": "application/json"}
            )
            assert response.status == 200
            view = await response.json()
            api.session.cookie_jar.clear()
            signed_out = await api.get("/console/pipeline.json", allow_redirects=False)
            assert signed_out.status == 303
    finally:
        await worker.close()
    answering, silent = view["workers"]
    assert answering == {
        "address": answering_at,
        "images_total": 3.0,
        "jobs_in_flight": 2.0,
        "pool_rebuilds": 0.0,
    }
    assert silent["address"] == "http://127.0.0.1:9/metrics"
    assert "ClientConnectorError" in silent["error"]
    assert (view["images_total"], view["jobs_in_flight"]) == (3.0, 2.0)
    assert view["stage_mean_ms"] == {"compress": 100.0}
    assert isinstance(view["lag"], dict)  # Kafka's answer, whatever the workers say
