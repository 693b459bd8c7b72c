"""API throughput under load, for the cache-hit and p99/p50 targets of bench/report.py: wrk
against the real API (run_api.py, one process) on the real stack, every scenario next to
GET /healthz on the same server in one run.

The API is pinned to one CPU and wrk (one thread, 64 connections, closed loop) to another with
`taskset`, so the load generator is never the bottleneck and the rate ratios measure the server.
Scenarios, one after the other: healthz, get-hit (GET /products/{id} rotating over 100 warmed
ids), list (GET /products with user and price filters) and create (POST /products, no images).
Writes bench/results/throughput.json. Fails only if the benchmark itself breaks (the API does not
start, wrk errors, a GET answers an error status); skipped when wrk is not installed. Timings
never fail it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.api_process import ApiClient, bench_env, running_api
from bench.conftest import QUICK, write_result
from bench.wrk import CpuPlan, cpu_plan, run_wrk, wrk_path

DURATION_S = 3 if QUICK else 10
WARMUP_S = 1  # a discarded run of each scenario before its measured one
CONNECTIONS = 64
PRODUCTS = 100
START_TIMEOUT_S = 30.0
REDIS_DB = 13  # the API benchmark uses 14 and the integration tests 15

pytestmark = pytest.mark.skipif(
    wrk_path() is None,
    reason="wrk is not installed (Debian package 'wrk'): the throughput benchmark needs it",
)


@dataclass
class Api:
    client: ApiClient
    plan: CpuPlan

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def user_id(self) -> str:
        return self.client.user_id

    @property
    def product_ids(self) -> list[int]:
        return self.client.product_ids

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str | None]:
        return self.client.request(method, path, body)


@pytest.fixture(scope="module")
def api(stack_env, tmp_path_factory) -> Iterator[Api]:
    # The open contract, as these targets were set; the access layer's cost is measured next to
    # it by bench/test_bench_access.py.
    env = bench_env(
        stack_env,
        redis_db=REDIS_DB,
        images_dir=str(tmp_path_factory.mktemp("images")),
        auth_mode="off",
    )
    plan = cpu_plan()
    with running_api(env, command_prefix=plan.prefix(plan.server)) as (client, process):
        if plan.pinned:  # taskset exec'd the interpreter: the pid is the API's own
            assert os.sched_getaffinity(process.pid) == {plan.server}
        # Prices all within the list scenario's 10-50.
        client.seed(PRODUCTS, name="throughput", price=lambda i: 10 + i % 40)
        client.warm(client.product_ids)
        yield Api(client, plan)


def _scenarios(api: Api) -> list[tuple[str, list[str]]]:
    """(name, wrk_report.lua arguments) in run order; healthz first, the baseline."""
    list_path = f"/products?user_id={api.user_id}&price_range=10-50&limit=20"
    return [
        ("healthz", ["path", "/healthz"]),
        ("get-hit", ["get", *map(str, api.product_ids)]),
        ("list", ["path", list_path]),
        ("create", ["create", json.dumps(api.user_id)]),
    ]


def test_throughput(api: Api) -> None:
    cpu_prefix = api.plan.prefix(api.plan.client)
    runs: dict[str, dict[str, Any]] = {}
    for name, script_args in _scenarios(api):
        # A warm-up run first, its result overwritten: opening the pool's connections and
        # preparing statements would otherwise land in the tail (a short run's p99 is 1 %).
        for duration_s in (WARMUP_S, DURATION_S):
            runs[name] = run_wrk(
                api.url,
                script_args,
                duration_s=duration_s,
                connections=CONNECTIONS,
                cpu_prefix=cpu_prefix,
            )
    # get-hit must have been served from the cache throughout: spot-check it is still warm.
    for product_id in api.product_ids[:: PRODUCTS // 10]:
        _, _, cache = api.request("GET", f"/products/{product_id}")
        assert cache == "HIT", f"product {product_id} fell out of the cache ({cache})"

    healthz_rps = runs["healthz"]["rps"]
    scenarios = [
        {
            "name": name,
            "rps": run["rps"],
            "p50_ms": run["p50_ms"],
            "p90_ms": run["p90_ms"],
            "p99_ms": run["p99_ms"],
            "max_ms": run["max_ms"],
            "errors": run["errors"],
            "ratio_to_healthz": run["rps"] / healthz_rps if healthz_rps else 0.0,
            "p99_over_p50": run["p99_ms"] / run["p50_ms"] if run["p50_ms"] else 0.0,
        }
        for name, run in runs.items()
    ]
    path = write_result(
        "throughput",
        {
            "tool": "wrk",
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "warmup_s": WARMUP_S,
            "pinned": api.plan.pinned,
            "scenarios": scenarios,
        },
    )
    print(f"\nwrk -t1 -c{CONNECTIONS} -d{DURATION_S}s, pinned: {api.plan.pinned} ({path})")
    print(
        f"{'scenario':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'×healthz':>9} {'p99/p50':>8}"
    )
    for row in scenarios:
        print(
            f"{row['name']:<9} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            f" {row['ratio_to_healthz']:>9.2f} {row['p99_over_p50']:>8.2f}"
            + (f"  errors: {row['errors']}" if row["errors"] else "")
        )

    for name, run in runs.items():
        assert run["requests"] > 0, f"{name}: wrk completed no request\n{run['output']}"
    # An error status on a GET means the benchmark is broken (wrong path, unknown id, server
    # failure), not slow: fail. Socket errors and create errors are reported in the JSON.
    for name in ("healthz", "get-hit", "list"):
        assert runs[name]["status_errors"] == 0, f"{name}: error statuses\n{runs[name]['output']}"
