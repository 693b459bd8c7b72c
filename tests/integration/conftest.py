"""Fixtures on the real stack (scripts/stack): PostgreSQL, Redis and Kafka on loopback.

Each test session gets its own database (catalogue_test, migrated once, emptied per session),
Redis database 15, and Kafka topics with a unique suffix, so a developer's data and earlier runs
never leak into a test. TEST_POSTGRES_DB and TEST_REDIS_DB choose others, so two sessions can
share one stack.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer

from config import Settings, load_settings
from db.migrate import migrate
from server.app import create_app

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack"

pytestmark = pytest.mark.integration


def stack(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STACK), *args], cwd=ROOT, capture_output=True, text=True, check=check, timeout=900
    )


def _stack_env() -> dict[str, str]:
    stack("up")
    line = stack("env").stdout.strip().removeprefix("export ")
    return dict(item.split("=", 1) for item in line.split())


async def wait_for(
    condition: Callable[[], Awaitable[Any]], *, timeout_s: float = 30, interval_s: float = 0.05
) -> Any:
    """Polls `condition` until it returns something truthy, or fails at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


async def _create_database_if_missing(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')  # a name from the developer's env
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    return _stack_env()


@pytest.fixture(scope="session")
def base_settings(stack_env, tmp_path_factory) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    test_db = os.environ.get("TEST_POSTGRES_DB", "catalogue_test")
    postgres_url = stack_env["POSTGRES_URL"].rsplit("/", 1)[0] + "/" + test_db
    env = {
        **stack_env,
        "POSTGRES_URL": postgres_url,
        "REDIS_URL": stack_env["REDIS_URL"].rsplit("/", 1)[0]
        + "/"
        + os.environ.get("TEST_REDIS_DB", "15"),
        "KAFKA_JOBS_TOPIC": f"test-jobs-{suffix}",
        "KAFKA_DLQ_TOPIC": f"test-jobs-{suffix}.dlq",
        "KAFKA_EVENTS_TOPIC": f"test-events-{suffix}",
        "KAFKA_TOPIC_PARTITIONS": "3",
        "IMAGE_STORAGE_URL": str(tmp_path_factory.mktemp("images")),
        "OUTBOX_POLL_INTERVAL_SECONDS": "0.5",
        # The open contract: most tests here are about products, cache and jobs, not access.
        # The access tests (test_api_access*.py) build their apps with AUTH_MODE=api_key.
        "AUTH_MODE": "off",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info"),
    }
    settings = load_settings(env, None)

    async def prepare() -> None:
        await _create_database_if_missing(stack_env["POSTGRES_URL"], test_db)
        await migrate(settings.postgres_url)
        conn = await asyncpg.connect(settings.postgres_url)
        try:
            await conn.execute(
                "TRUNCATE outbox, idempotency_keys, cache_debts, products, users RESTART IDENTITY CASCADE"
            )
        finally:
            await conn.close()
        client = redis.Redis.from_url(settings.redis_url)
        await client.flushdb()
        await client.aclose()

    asyncio.run(prepare())
    return settings


@pytest.fixture
def settings(base_settings) -> Settings:
    return base_settings


@pytest.fixture
async def db(settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(settings.postgres_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(settings) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def api(settings) -> AsyncIterator[TestClient]:
    """The real application on a loopback port, started with its cleanup contexts."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def user(api) -> dict[str, str]:
    response = await api.post(
        "/users", json={"username": "tester", "email": f"{uuid.uuid4().hex}@example.com"}
    )
    assert response.status == 201
    return await response.json()
