"""The real API as a subprocess for benchmarks: started on a free loopback port against the
stack, with its own database and Redis db, seeded through its own endpoints, and stopped after.

Every benchmark names its access mode (`bench_env(auth_mode=...)`): AUTH_MODE=off for those
that measure the open contract, api_key (the product's default) for the access benchmark, whose
requests then carry the seeded user's key (or an admin key) as bearer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bench.conftest import ROOT, free_port
from testkit.serving import wait_until_answering

START_TIMEOUT_S = 30.0
# Benchmarks get a database of their own: the integration tests truncate catalogue_test.
DATABASE = "catalogue_bench"


@functools.cache
def bench_database_url(stack_postgres_url: str) -> str:
    """The shared benchmark database, made fresh once per run (`fresh_database`), so rows left
    by earlier runs (the create scenario adds thousands) never skew the next one."""
    return fresh_database(stack_postgres_url, DATABASE)


def fresh_database(stack_postgres_url: str, name: str) -> str:
    """Database `name` on the stack's server, created when missing, migrated and emptied; its
    URL. A benchmark whose rows must not mix with the others' passes a name of its own."""
    url = stack_postgres_url.rsplit("/", 1)[0] + f"/{name}"

    async def ensure() -> None:
        admin = await asyncpg.connect(stack_postgres_url)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    async def empty() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "TRUNCATE outbox, cache_debts, products, users RESTART IDENTITY CASCADE"
            )
        finally:
            await conn.close()

    asyncio.run(ensure())
    subprocess.run(
        [sys.executable, "-m", "db", "migrate"],
        cwd=ROOT,
        env={**os.environ, "POSTGRES_URL": url, "LOG_LEVEL": "warning"},
        check=True,
        timeout=120,
    )
    asyncio.run(empty())
    return url


def bench_env(
    stack_env: dict[str, str],
    *,
    redis_db: int,
    images_dir: str,
    auth_mode: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The API's environment: `auth_mode` is AUTH_MODE, explicit whatever the caller's shell
    says (off: the open contract; api_key: the access layer, as deployed by default); `extra`
    adds settings (ADMIN_API_KEYS, RATE_LIMIT_READS, ...)."""
    suffix = uuid.uuid4().hex[:8]
    return {
        **os.environ,
        **stack_env,
        "POSTGRES_URL": bench_database_url(stack_env["POSTGRES_URL"]),
        "REDIS_URL": stack_env["REDIS_URL"].rsplit("/", 1)[0] + f"/{redis_db}",
        "KAFKA_JOBS_TOPIC": f"bench-jobs-{suffix}",
        "KAFKA_DLQ_TOPIC": f"bench-jobs-{suffix}.dlq",
        "IMAGE_STORAGE_URL": images_dir,
        "LOG_LEVEL": "warning",
        "AUTH_MODE": auth_mode,
        **(extra or {}),
    }


def admin_key() -> str:
    """A fresh admin key for ADMIN_API_KEYS (never shaped like a user key, `catk_…`)."""
    key = secrets.token_urlsafe(32)
    return key if not key.startswith("catk_") else admin_key()


def bearer(api_key: str | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


@dataclass
class ApiClient:
    """One kept-alive loopback connection: small, predictable client overhead.

    With the access layer on, `api_key` (the seeded user's, from its POST /users answer) goes
    with every request; `seed_key` (an admin key, exempt from limits) replaces it while seeding.
    """

    port: int
    redis: redis.Redis
    conn: http.client.HTTPConnection
    user_id: str = ""
    product_ids: list[int] = field(default_factory=list)
    api_key: str | None = None
    seed_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exchange(
        self, method: str, path: str, body: Any = None, *, api_key: str | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """One request with `api_key` (default: the client's) as bearer: status, body and the
        answer's headers."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        headers.update(bearer(api_key or self.api_key))
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closed the kept-alive connection while it sat idle (aiohttp's
            # keep-alive timeout, 75 s, is shorter than a long wrk phase): once more, anew.
            self.conn.close()
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str | None]:
        status, data, headers = self.exchange(method, path, body)
        return status, data, headers.get("X-Cache")

    def seed(self, count: int, *, name: str, price: Any) -> None:
        """Creates a user and `count` products without images; `price(i)` gives each price. The
        user's key, when the API answers one, is the client's from then on."""
        status, body, _ = self.exchange(
            "POST",
            "/users",
            {"username": name, "email": f"{name}-{uuid.uuid4().hex}@example.com"},
            api_key=self.seed_key,
        )
        assert status == 201, body
        answer = json.loads(body)
        self.user_id = answer["user_id"]
        self.api_key = answer.get("api_key") or self.api_key
        for i in range(count):
            status, body, _ = self.exchange(
                "POST",
                "/products",
                {
                    "user_id": self.user_id,
                    "product_name": f"{name} product {i}",
                    "product_description": f"A product of the {name} benchmark",
                    "product_images": [],
                    "product_price": price(i),
                },
                api_key=self.seed_key,
            )
            assert status == 201, body
            self.product_ids.append(int(json.loads(body)["product_id"]))

    def warm(self, product_ids: Sequence[int]) -> None:
        """GETs each product until the API answers it from its cache (X-Cache: HIT): a Redis
        hiccup at start-up makes the API bypass the cache for a while, hence the deadline."""
        deadline = time.monotonic() + START_TIMEOUT_S
        for product_id in product_ids:
            while True:
                status, body, cache = self.request("GET", f"/products/{product_id}")
                assert status == 200, body
                if cache == "HIT":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"product {product_id} not cached in {START_TIMEOUT_S} s")


@contextlib.contextmanager
def running_api(
    env: dict[str, str], *, command_prefix: Sequence[str] = (), log_path: str | None = None
) -> Iterator[tuple[ApiClient, subprocess.Popen[bytes]]]:
    """run_api.py, one process, until the block ends; its output (the log) to `log_path` when
    given, as a deployment writes it to a file or a collector's pipe, else to this process's."""
    # Retries ride out a Redis restart (the integration tests stop it on purpose).
    cache = redis.Redis.from_url(
        env["REDIS_URL"],
        retry=Retry(ExponentialBackoff(cap=1.0), retries=10),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    cache.flushdb()
    port = free_port()
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115  # closed below
    process = subprocess.Popen(
        [
            *command_prefix,
            sys.executable,
            "run_api.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    if log is not None:
        log.close()  # the child holds its own descriptor
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        wait_until_answering(
            f"http://127.0.0.1:{port}", process, timeout_s=START_TIMEOUT_S, what="run_api.py"
        )
        yield ApiClient(port, cache, conn), process
    finally:
        conn.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(redis.RedisError):
            cache.flushdb()
        cache.close()
