"""GET /products/{id} on the real API (run_api.py, a subprocess) and the real stack: cache HIT
against cache MISS, side by side in one run.

The MISS rounds delete the product's Redis key in pedantic ``setup``, outside the timed region,
so every timed request is a real miss (checked with the ``X-Cache`` header). The client is a
kept-alive ``http.client`` connection to 127.0.0.1, to keep client overhead small.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from bench.api_process import ApiClient, bench_env, running_api
from bench.conftest import QUICK, write_result
from catalogue.cache import product_key  # the key the API caches a product under

ROUNDS = 50 if QUICK else 500
WARMUP_ROUNDS = 5 if QUICK else 20
PRODUCTS = ROUNDS + WARMUP_ROUNDS + 1  # the first is the hit benchmark's
START_TIMEOUT_S = 30.0


@dataclass
class Api:
    client: ApiClient
    medians: dict[str, float] = field(default_factory=dict)

    @property
    def product_ids(self) -> list[int]:
        return self.client.product_ids

    @property
    def redis(self) -> redis.Redis:
        return self.client.redis

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str | None]:
        return self.client.request(method, path, body)


@pytest.fixture(scope="module")
def api(stack_env, tmp_path_factory) -> Iterator[Api]:
    # The open contract: this measures the cache, not the access layer (bench/test_bench_access.py).
    env = bench_env(
        stack_env,
        redis_db=14,
        images_dir=str(tmp_path_factory.mktemp("images")),
        auth_mode="off",
    )
    with running_api(env) as (client, _process):
        client.seed(PRODUCTS, name="bench", price=lambda i: 10 + i % 90)
        client.warm(client.product_ids[:1])
        api = Api(client)
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
        api.redis.delete(product_key(product_id))
        return (f"/products/{product_id}",), {}

    def get(path: str) -> None:
        status, _, cache = api.request("GET", path)
        assert status == 200
        seen.append(cache)

    benchmark.pedantic(get, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert set(seen) == {"MISS"}, seen
    api.medians["miss"] = statistics.median(benchmark.stats.stats.data)
