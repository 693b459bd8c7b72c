"""GET /products/{id} on the real API (run_api.py, a subprocess) and the real stack: cache HIT
against cache MISS, side by side in one run.

The MISS rounds delete the product's Redis key in pedantic ``setup``, outside the timed region,
so every timed request is a real miss (checked with the ``X-Cache`` header). The client is a
kept-alive ``http.client`` connection to 127.0.0.1, to keep client overhead small.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bench.conftest import QUICK, ROOT, free_port, write_result

ROUNDS = 50 if QUICK else 500
WARMUP_ROUNDS = 5 if QUICK else 20
PRODUCTS = ROUNDS + WARMUP_ROUNDS + 1  # the first is the hit benchmark's
START_TIMEOUT_S = 30.0
KEY_PREFIX = "product:v1:"  # server.cache.KEY_PREFIX


@dataclass
class Api:
    port: int
    redis: redis.Redis
    conn: http.client.HTTPConnection
    product_ids: list[int]
    medians: dict[str, float] = field(default_factory=dict)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str | None]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read(), response.getheader("X-Cache")


def _wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    """Polls /healthz until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"run_api.py exited with status {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError as exc:
            last_error = exc
        # Poll again: each attempt is bounded by the connect timeout; a refused connection
        # returns at once, so wait on the process briefly instead of spinning.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)
    raise RuntimeError(f"API not healthy within {START_TIMEOUT_S} s: {last_error}")


def _wait_cache_usable(api: Api) -> None:
    """Polls until the API answers a GET from Redis: a Redis failure at start-up makes the API
    bypass the cache for a while, which would turn both benchmarks into database reads."""
    path = f"/products/{api.product_ids[0]}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        status, body, cache = api.request("GET", path)
        assert status == 200, body
        if cache == "HIT":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not answer from Redis within {START_TIMEOUT_S} s")
        # Each round trip is the poll interval; the answer fills the cache when Redis is up.
        api.redis.ping()


@pytest.fixture(scope="module")
def api(stack_env, tmp_path_factory) -> Iterator[Api]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **stack_env,
        "POSTGRES_URL": stack_env["POSTGRES_URL"].rsplit("/", 1)[0] + "/catalogue_test",
        "REDIS_URL": stack_env["REDIS_URL"].rsplit("/", 1)[0] + "/14",
        "KAFKA_JOBS_TOPIC": f"bench-jobs-{suffix}",
        "KAFKA_DLQ_TOPIC": f"bench-jobs-{suffix}.dlq",
        "IMAGE_STORAGE_URL": str(tmp_path_factory.mktemp("images")),
        "LOG_LEVEL": "warning",
    }
    subprocess.run(
        [sys.executable, "-m", "db", "migrate"], cwd=ROOT, env=env, check=True, timeout=120
    )
    # Retries ride out a Redis restart (the integration tests stop it on purpose).
    cache = redis.Redis.from_url(
        env["REDIS_URL"],
        retry=Retry(ExponentialBackoff(cap=1.0), retries=10),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    cache.flushdb()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "run_api.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _wait_healthy(port, process)
        api = Api(port=port, redis=cache, conn=conn, product_ids=[])
        status, body, _ = api.request(
            "POST", "/users", {"username": "bench", "email": f"bench-{suffix}@example.com"}
        )
        assert status == 201, body
        user_id = json.loads(body)["user_id"]
        for i in range(PRODUCTS):
            status, body, _ = api.request(
                "POST",
                "/products",
                {
                    "user_id": user_id,
                    "product_name": f"Bench product {i}",
                    "product_description": "A product of the GET benchmark",
                    "product_images": [],
                    "product_price": 10 + i % 90,
                },
            )
            assert status == 201, body
            api.product_ids.append(int(json.loads(body)["product_id"]))
        _wait_cache_usable(api)
        yield api
        if {"hit", "miss"} <= api.medians.keys():
            hit, miss = api.medians["hit"], api.medians["miss"]
            write_result(
                "api",
                {
                    "rounds": ROUNDS,
                    "hit_median_us": hit * 1e6,
                    "miss_median_us": miss * 1e6,
                    "miss_over_hit": miss / hit,
                },
            )
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


def test_get_product_cache_hit(benchmark, api: Api) -> None:
    product_id = api.product_ids[0]
    path = f"/products/{product_id}"
    for _ in range(WARMUP_ROUNDS):
        status, _, _ = api.request("GET", path)
        assert status == 200
    seen: list[str | None] = []

    def get() -> None:
        status, _, cache = api.request("GET", path)
        assert status == 200
        seen.append(cache)

    benchmark.pedantic(get, rounds=ROUNDS, iterations=1)
    assert set(seen) == {"HIT"}, seen
    api.medians["hit"] = statistics.median(benchmark.stats.stats.data)


def test_get_product_cache_miss(benchmark, api: Api) -> None:
    ids = iter(api.product_ids[1:])  # never the id the hit benchmark holds in process memory
    seen: list[str | None] = []

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        product_id = next(ids)
        api.redis.delete(f"{KEY_PREFIX}{product_id}")
        return (f"/products/{product_id}",), {}

    def get(path: str) -> None:
        status, _, cache = api.request("GET", path)
        assert status == 200
        seen.append(cache)

    benchmark.pedantic(get, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert set(seen) == {"MISS"}, seen
    api.medians["miss"] = statistics.median(benchmark.stats.stats.data)
