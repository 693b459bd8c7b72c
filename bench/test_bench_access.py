"""The access layer's cost on the hot path, for the with-key targets of bench/report.py: wrk
against two real APIs (run_api.py, one process each) side by side in one run, on the same
database and the same cache:

- ``off``: AUTH_MODE=off, the open contract;
- ``key``: AUTH_MODE=api_key, as deployed by default, with a read limit no wrk run can reach
  (RATE_LIMIT_READS=1000000/s: a limiter that refused would fake a fast path, so every GET must
  answer 200, which wrk's count of error statuses checks) and the default write limit
  (RATE_LIMIT_WRITES, 20/s).

Both APIs are pinned to the same CPU and wrk (one thread, 64 connections, closed loop) to
another, as in bench/test_bench_throughput.py. Rounds interleave, their order alternating from
one round to the next: the cache-hit GET /products/{id} with the seeded user's key (wrk -H
'Authorization: Bearer …') on ``off``, which ignores it, the same GET on ``key``, and /healthz
on ``key``.
The ratios are medians of the per-round ratios: with-key / off (target ≥ 0.9) and with-key /
/healthz (target ≥ 0.6), from requests/s and, steadier on a shared machine, from the server's CPU
time per request (/proc/<pid>/stat over each run: off's over with-key's).

Then the write path with the limits on: POST /products (no images) with the user's key on ``key``,
wrk counting the answers by status: the admitted creates/s (201) and the share refused (429).

Writes bench/results/access.json. Fails only if the benchmark itself breaks (an API does not
start, wrk errors, a GET answers an error status, a create answers anything but 201 or 429);
skipped when wrk is not installed. Timings never fail it.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.api_process import ApiClient, admin_key, bearer, bench_env, running_api
from bench.conftest import QUICK, write_result
from bench.proc_cpu import cpu_seconds
from bench.wrk import CpuPlan, cpu_plan, run_wrk, summary_of_rounds, wrk_path
from config import Settings

DURATION_S = 1 if QUICK else 3  # short rounds, many: a noisy second spoils one pair, not a run
WARMUP_S = 1  # a discarded run of each scenario before the rounds
ROUNDS = 9 if QUICK else 15
CREATE_DURATION_S = 3 if QUICK else 10
CONNECTIONS = 64
PRODUCTS = 100
# Both APIs share it (same database, so the same cached bytes); the other benchmarks use 12-14.
REDIS_DB = 11
READ_LIMIT = "1000000/s"  # never reached: ~50 times what one API process serves
DEFAULTS = Settings()

pytestmark = pytest.mark.skipif(
    wrk_path() is None,
    reason="wrk is not installed (Debian package 'wrk'): the access benchmark needs it",
)


@dataclass
class Apis:
    off: ApiClient
    key: ApiClient
    plan: CpuPlan
    off_pid: int
    key_pid: int

    @property
    def user_key(self) -> str:
        assert self.key.api_key is not None
        return self.key.api_key


@pytest.fixture(scope="module")
def apis(stack_env, tmp_path_factory) -> Iterator[Apis]:
    images = str(tmp_path_factory.mktemp("images"))
    admin = admin_key()
    off_env = bench_env(stack_env, redis_db=REDIS_DB, images_dir=images, auth_mode="off")
    key_env = bench_env(
        stack_env,
        redis_db=REDIS_DB,
        images_dir=images,
        auth_mode="api_key",
        extra={
            "ADMIN_API_KEYS": admin,
            "USER_SIGNUP": DEFAULTS.user_signup,
            "PRODUCT_READS": DEFAULTS.product_reads,
            "RATE_LIMIT_READS": READ_LIMIT,
            # The product's defaults, whatever the caller's shell says.
            "RATE_LIMIT_WRITES": str(DEFAULTS.rate_limit_writes),
            "IMAGE_QUOTA_PER_HOUR": str(DEFAULTS.image_quota_per_hour),
        },
    )
    plan = cpu_plan()
    prefix = plan.prefix(plan.server)
    with contextlib.ExitStack() as stack:
        off, off_process = stack.enter_context(running_api(off_env, command_prefix=prefix))
        key, key_process = stack.enter_context(running_api(key_env, command_prefix=prefix))
        if plan.pinned:  # taskset exec'd the interpreter: the pids are the APIs' own
            assert os.sched_getaffinity(off_process.pid) == {plan.server}
            assert os.sched_getaffinity(key_process.pid) == {plan.server}
        # Seeded with the admin key (exempt from the write limit); read with the user's key.
        key.seed_key = admin
        key.seed(PRODUCTS, name="access", price=lambda i: 10 + i % 40)
        assert key.api_key is not None, "POST /users answered no key"
        assert key.api_key.startswith("catk_"), key.api_key
        off.user_id, off.product_ids = key.user_id, list(key.product_ids)
        key.warm(key.product_ids)
        off.warm(off.product_ids)
        yield Apis(off, key, plan, off_process.pid, key_process.pid)


def _checked_hit(client: ApiClient, product_id: int) -> dict[str, str]:
    status, body, headers = client.exchange("GET", f"/products/{product_id}")
    assert status == 200, body
    assert headers.get("X-Cache") == "HIT", headers
    return headers


def _rate_limit_fields(headers: dict[str, str]) -> list[str]:
    return [name for name in headers if name.lower().startswith("ratelimit")]


def test_access_layer_cost(apis: Apis) -> None:
    # Before: the access layer is on where it should be, and the limiter is in the path (its
    # RateLimit header fields on the answer).
    assert not _rate_limit_fields(_checked_hit(apis.off, apis.off.product_ids[0]))
    assert _rate_limit_fields(_checked_hit(apis.key, apis.key.product_ids[0]))
    status, _, _ = apis.key.exchange(
        "GET", f"/products/{apis.key.product_ids[0]}", api_key="catk_" + "0" * 16 + "_" + "A" * 43
    )
    assert status == 401

    cpu_prefix = apis.plan.prefix(apis.plan.client)
    ids = [str(i) for i in apis.key.product_ids]
    key_header = bearer(apis.user_key)
    scenarios: dict[str, tuple[str, int, list[str], dict[str, str]]] = {
        # The same request, byte for byte: AUTH_MODE=off ignores the key (as an API behind a
        # gateway that authenticates gets it forwarded), so the ratio is the access layer's
        # cost alone, not the cost of parsing one more request header.
        "get-hit off": (apis.off.url, apis.off_pid, ["get", *ids], key_header),
        "get-hit with key": (apis.key.url, apis.key_pid, ["get", *ids], key_header),
        "healthz": (apis.key.url, apis.key_pid, ["path", "/healthz"], {}),
    }

    def run(name: str, duration_s: int) -> dict[str, Any]:
        url, pid, script_args, headers = scenarios[name]
        cpu_before = cpu_seconds(pid)
        result = run_wrk(
            url,
            script_args,
            duration_s=duration_s,
            connections=CONNECTIONS,
            cpu_prefix=cpu_prefix,
            headers=headers,
        )
        cpu_s = cpu_seconds(pid) - cpu_before
        result["cpu_us_per_request"] = cpu_s / max(1, result["requests"]) * 1e6
        return result

    for name in scenarios:  # warm-up, discarded
        run(name, WARMUP_S)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    order = list(scenarios)
    for round_number in range(ROUNDS):
        for name in order if round_number % 2 == 0 else reversed(order):
            result = run(name, DURATION_S)
            # An error status means a broken benchmark (or a limiter refusing): fail.
            assert result["requests"] > 0, f"{name}: no request\n{result['output']}"
            assert result["status_errors"] == 0, f"{name}: error statuses\n{result['output']}"
            runs[name].append(result)

    # After: still served from the cache, with the key.
    for product_id in apis.key.product_ids[:: PRODUCTS // 10]:
        _checked_hit(apis.key, product_id)

    # The write path with the limits on: one key's creates, 201 or 429.
    create = run_wrk(
        apis.key.url,
        ["statuses", "create", json.dumps(apis.key.user_id)],
        duration_s=CREATE_DURATION_S,
        connections=CONNECTIONS,
        cpu_prefix=cpu_prefix,
        headers=key_header,
    )
    statuses = create["statuses"]
    assert set(statuses) <= {201, 429}, f"create: unexpected statuses {statuses}"
    assert statuses.get(201, 0) > 0, f"create: nothing admitted {statuses}"
    assert sum(statuses.values()) == create["requests"], (statuses, create["requests"])
    assert create["socket_errors"] == 0, create["output"]

    def per_round(baseline: str, field: str) -> list[float]:
        """With-key's speed over `baseline`'s, round by round: from requests/s, or from CPU per
        request (the baseline's µs over with-key's: a throughput ratio for a CPU-bound server,
        steadier than requests/s when a round loses the core)."""
        pairs = zip(runs["get-hit with key"], runs[baseline], strict=True)
        if field == "rps":
            return [key["rps"] / base["rps"] for key, base in pairs]
        return [base[field] / key[field] for key, base in pairs]

    key_over_off = per_round("get-hit off", "rps")
    key_over_healthz = per_round("healthz", "rps")
    key_over_off_cpu = per_round("get-hit off", "cpu_us_per_request")
    key_over_healthz_cpu = per_round("healthz", "cpu_us_per_request")
    summaries = {name: summary_of_rounds(results) for name, results in runs.items()}
    write = {
        "rps": create["rps"],
        "admitted_per_s": statuses.get(201, 0) / create["duration_s"],
        "refused_share": statuses.get(429, 0) / create["requests"],
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "p50_ms": create["p50_ms"],
        "p99_ms": create["p99_ms"],
        "limit": str(DEFAULTS.rate_limit_writes),
    }
    path = write_result(
        "access",
        {
            "tool": "wrk",
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "create_duration_s": CREATE_DURATION_S,
            "warmup_s": WARMUP_S,
            "rounds": ROUNDS,
            "pinned": apis.plan.pinned,
            "read_limit": READ_LIMIT,
            "scenarios": summaries,
            "key_over_off": statistics.median(key_over_off),
            "key_over_off_rounds": key_over_off,
            "key_over_healthz": statistics.median(key_over_healthz),
            "key_over_healthz_rounds": key_over_healthz,
            "key_over_off_cpu": statistics.median(key_over_off_cpu),
            "key_over_off_cpu_rounds": key_over_off_cpu,
            "key_over_healthz_cpu": statistics.median(key_over_healthz_cpu),
            "key_over_healthz_cpu_rounds": key_over_healthz_cpu,
            "create": write,
        },
    )
    print(
        f"\nwrk -t1 -c{CONNECTIONS} -d{DURATION_S}s × {ROUNDS} interleaved rounds,"
        f" pinned: {apis.plan.pinned} ({path})"
    )
    for name, row in summaries.items():
        rounds = " ".join(f"{rps:.0f}" for rps in row["round_rps"])
        print(
            f"{name:<17} {row['rps']:>9.0f} req/s  p50 {row['p50_ms']:.2f} ms"
            f"  p99 {row['p99_ms']:.2f} ms  {row['cpu_us_per_request']:.1f} µs CPU/request"
            f"  (rounds: {rounds})"
        )
    print(
        f"with key / off: {statistics.median(key_over_off):.2f}"
        f" (rounds: {' '.join(f'{r:.2f}' for r in key_over_off)});"
        f" with key / healthz: {statistics.median(key_over_healthz):.2f};"
        f" by CPU per request: {statistics.median(key_over_off_cpu):.2f}"
        f" (rounds: {' '.join(f'{r:.2f}' for r in key_over_off_cpu)})"
        f" and {statistics.median(key_over_healthz_cpu):.2f}"
    )
    print(
        f"create with limits on ({write['limit']} per key): {write['rps']:.0f} answers/s,"
        f" {write['admitted_per_s']:.1f} admitted/s, {write['refused_share']:.1%} refused (429)"
    )
