"""Idempotency-Key on POST /products and POST /users, on the real stack: a retry replays the
first answer and creates nothing, another body is 422, a retry while the first is still running
is 409, and the record commits with what it created or not at all.

The "still running" first request is held inside its transaction deterministically: a separate
connection holds a row lock its INSERT must wait for (the user row, for the product's foreign key;
an uncommitted row with the same email, for the sign-up's unique index). The test waits until
PostgreSQL shows the request blocked while holding the key's advisory lock, sends the retry,
then releases the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from .conftest import wait_for
from .test_api_access import (
    ADMIN,
    ADMIN_KEY,
    OTHER_ADMIN_KEY,
    access_api,
    bearer,
    new_user,
    no_key_in_the_logs,  # noqa: F401 (autouse: every test's logs are checked for keys)
    remember,
    secret_of,
)

pytestmark = pytest.mark.integration

KEY = "Idempotency-Key"


def fresh_key() -> str:
    return f"retry-{uuid.uuid4()}"


def product_body(**fields: Any) -> dict[str, Any]:
    return {"product_name": "Teapot", "product_price": 12.5, **fields}


def user_body() -> dict[str, Any]:
    return {"username": "ann", "email": f"{uuid.uuid4().hex}@example.com"}


def key_hash(operation: str, key: str) -> bytes:
    return hashlib.sha256(f"{operation}\0{key}".encode()).digest()


async def records(db: asyncpg.Pool, operation: str, key: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM idempotency_keys WHERE key_hash = $1", key_hash(operation, key)
    )


def dead_kafka() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def api(settings) -> AsyncIterator[Any]:
    # Kafka unreachable: the relay cannot publish, so every job a create queued stays in the
    # outbox, where it is counted. A long statement timeout: a request held by a test waits.
    async with access_api(
        settings, kafka_bootstrap_servers=dead_kafka(), db_statement_timeout_seconds=60.0
    ) as client:
        yield client


# -- replay --------------------------------------------------------------------------------------


async def test_a_retried_product_create_replays_its_answer_and_creates_nothing(api, db, settings):
    user_id, headers = await new_user(api)
    key = fresh_key()
    body = product_body(product_images=["https://images.example.com/teapot.jpg"])
    first = await api.post("/products", json=body, headers={**headers, KEY: key})
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    again = await api.post("/products", json=body, headers={**headers, KEY: key})
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    assert again.headers["Location"] == first.headers["Location"]
    product_id = (await first.json())["product_id"]
    assert await db.fetchval("SELECT count(*) FROM products WHERE user_id = $1", int(user_id)) == 1
    one_each = "SELECT topic, count(*) FROM outbox WHERE key = $1 GROUP BY topic"
    queued = {r["topic"]: r["count"] for r in await db.fetch(one_each, product_id)}
    assert queued == {settings.kafka_jobs_topic: 1, settings.kafka_events_topic: 1}


async def test_a_retried_sign_up_replays_its_answer_and_creates_no_user(api, db):
    key = fresh_key()
    body = user_body()
    first = await api.post("/users", json=body, headers={KEY: key})
    assert first.status == 201
    answer = await first.json()
    remember(answer["api_key"])
    again = await api.post("/users", json=body, headers={KEY: key})
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == answer  # the same user, and the same key
    count = await db.fetchval("SELECT count(*) FROM users WHERE email = $1", body["email"])
    assert count == 1
    keys = await db.fetchval(
        "SELECT count(*) FROM api_keys WHERE user_id = $1", int(answer["user_id"])
    )
    assert keys == 1


async def test_the_same_key_with_another_product_body_is_422(api):
    _, headers = await new_user(api)
    key = fresh_key()
    assert (
        await api.post("/products", json=product_body(), headers={**headers, KEY: key})
    ).status == 201
    other = product_body(product_price=13)
    response = await api.post("/products", json=other, headers={**headers, KEY: key})
    assert response.status == 422
    assert (await response.json())["details"] == {"header": KEY}


async def test_the_same_key_with_another_sign_up_body_is_422(api):
    key = fresh_key()
    first = await api.post("/users", json=user_body(), headers={KEY: key})
    assert first.status == 201
    remember((await first.json())["api_key"])
    response = await api.post("/users", json=user_body(), headers={KEY: key})
    assert response.status == 422


async def test_an_idempotency_key_is_per_caller(api):
    _, first = await new_user(api)
    _, second = await new_user(api)
    key = fresh_key()
    a = await api.post("/products", json=product_body(), headers={**first, KEY: key})
    b = await api.post("/products", json=product_body(), headers={**second, KEY: key})
    assert (a.status, b.status) == (201, 201)
    assert "Idempotent-Replayed" not in b.headers
    assert (await a.json())["product_id"] != (await b.json())["product_id"]


async def test_two_admin_keys_do_not_share_idempotency_keys(settings):
    async with access_api(settings, admin_api_keys=f"{ADMIN_KEY},{OTHER_ADMIN_KEY}") as api:
        user_id, _ = await new_user(api)
        key = fresh_key()
        body = product_body(user_id=user_id)
        a = await api.post("/products", json=body, headers={**ADMIN, KEY: key})
        b = await api.post("/products", json=body, headers={**bearer(OTHER_ADMIN_KEY), KEY: key})
        assert (a.status, b.status) == (201, 201)
        assert "Idempotent-Replayed" not in b.headers
        assert (await a.json())["product_id"] != (await b.json())["product_id"]


async def test_a_malformed_idempotency_key_is_400(api):
    _, headers = await new_user(api)
    response = await api.post("/products", json=product_body(), headers={**headers, KEY: "k" * 256})
    assert response.status == 400
    assert (await response.json())["details"] == {"field": KEY}


# -- in progress ---------------------------------------------------------------------------------


async def held_with_the_key(db: asyncpg.Pool) -> bool:
    """Whether a request of the app holds an Idempotency-Key's advisory lock while it waits
    for a row lock: the first request, inside its transaction."""
    return await db.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE l.locktype = 'advisory' AND l.granted
                  AND a.wait_event_type = 'Lock' AND a.datname = current_database())"""
    )


async def test_a_product_create_retried_while_the_first_runs_is_409(api, db, settings):
    user_id, headers = await new_user(api)
    key = fresh_key()
    send = {**headers, KEY: key}
    barrier = await asyncpg.connect(settings.postgres_url)
    try:
        holding = barrier.transaction()
        await holding.start()
        # The product's foreign key check waits for this lock on its user's row.
        await barrier.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", int(user_id))
        first = asyncio.create_task(api.post("/products", json=product_body(), headers=send))
        await wait_for(lambda: held_with_the_key(db), timeout_s=60)
        retry = await api.post("/products", json=product_body(), headers=send)
        assert retry.status == 409
        assert (await retry.json())["details"] == {"header": KEY}
        await holding.rollback()
        answered = await first
        assert answered.status == 201
    finally:
        await barrier.close()
    replay = await api.post("/products", json=product_body(), headers=send)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == await answered.json()
    assert await db.fetchval("SELECT count(*) FROM products WHERE user_id = $1", int(user_id)) == 1


async def test_a_sign_up_retried_while_the_first_runs_is_409(api, db, settings):
    key = fresh_key()
    body = user_body()
    barrier = await asyncpg.connect(settings.postgres_url)
    try:
        holding = barrier.transaction()
        await holding.start()
        # The sign-up's INSERT waits on the unique index for this uncommitted row's fate.
        await barrier.execute(
            "INSERT INTO users (username, email) VALUES ('barrier', $1)", body["email"]
        )
        first = asyncio.create_task(api.post("/users", json=body, headers={KEY: key}))
        await wait_for(lambda: held_with_the_key(db), timeout_s=60)
        retry = await api.post("/users", json=body, headers={KEY: key})
        assert retry.status == 409
        assert "in progress" in (await retry.json())["message"]
        await holding.rollback()
        answered = await first
        assert answered.status == 201
    finally:
        await barrier.close()
    answer = await answered.json()
    remember(answer["api_key"])
    replay = await api.post("/users", json=body, headers={KEY: key})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == answer


# -- recorded with what it created ---------------------------------------------------------------


async def test_a_failed_sign_up_records_no_idempotency_key(api, db):
    taken = user_body()
    first = await api.post("/users", json=taken, headers=ADMIN)
    remember((await first.json())["api_key"])
    key = fresh_key()
    duplicate = await api.post("/users", json=taken, headers={KEY: key})
    assert duplicate.status == 409  # the email exists: nothing created, nothing recorded
    assert await records(db, "POST /users", key) == []
    retried = await api.post("/users", json=user_body(), headers={KEY: key})
    assert retried.status == 201  # not 422: no answer was kept for the failed one
    remember((await retried.json())["api_key"])
    assert len(await records(db, "POST /users", key)) == 1


async def test_a_failed_product_create_records_no_idempotency_key(api, db):
    user_id, _ = await new_user(api)
    key = fresh_key()
    unknown = await api.post(
        "/products", json=product_body(user_id="999999999"), headers={**ADMIN, KEY: key}
    )
    assert unknown.status == 422
    assert await records(db, "POST /products", key) == []
    created = await api.post(
        "/products", json=product_body(user_id=user_id), headers={**ADMIN, KEY: key}
    )
    assert created.status == 201
    assert len(await records(db, "POST /products", key)) == 1


async def test_a_create_refused_by_the_image_quota_records_nothing(settings, db):
    async with access_api(settings, image_quota_per_hour=1) as api:
        user_id, headers = await new_user(api)
        key = fresh_key()
        two = ["https://images.example.com/a.jpg", "https://images.example.com/b.jpg"]
        refused = await api.post(
            "/products", json=product_body(product_images=two), headers={**headers, KEY: key}
        )
        assert refused.status == 429
        assert await records(db, "POST /products", key) == []
        count = await db.fetchval("SELECT count(*) FROM products WHERE user_id = $1", int(user_id))
        assert count == 0
        created = await api.post("/products", json=product_body(), headers={**headers, KEY: key})
        assert created.status == 201


async def test_a_replayed_create_is_not_charged_its_images_again(settings):
    async with access_api(settings, image_quota_per_hour=2) as api:
        _, headers = await new_user(api)
        key = fresh_key()
        body = product_body(
            product_images=["https://images.example.com/a.jpg", "https://images.example.com/b.jpg"]
        )
        first = await api.post("/products", json=body, headers={**headers, KEY: key})
        assert first.status == 201
        again = await api.post("/products", json=body, headers={**headers, KEY: key})
        assert again.status == 201, await again.text()  # the replay, not the quota's 429
        assert again.headers["Idempotent-Replayed"] == "true"


async def test_a_sign_ups_record_holds_its_api_key_only_sealed(api, db):
    key = fresh_key()
    response = await api.post("/users", json=user_body(), headers={KEY: key})
    token = remember((await response.json())["api_key"])
    (row,) = await records(db, "POST /users", key)
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert token.encode() not in stored
    assert secret_of(token).encode() not in stored
    assert key.encode() not in stored  # found by its hash, not stored in clear
