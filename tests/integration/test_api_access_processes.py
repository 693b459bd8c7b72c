"""The access rules that span API processes, with two real ones: two `run_api.py` processes on
two ports, sharing the session's database and Redis (the honest "two processes" setup:
`--workers 2` would share one port, and which child answers would be the kernel's choice).

- a key revoked through one process is refused by the other (within its one-second memory: the
  bound itself is unit-tested on a controlled clock, tests/unit/test_access_auth.py);
- a key's read and write budgets are shared: what one process admitted, the other does not;
- the processes' JSON logs of the whole module name callers by user_id and key_id, and hold no
  key, no secret and no hash of either, as do the answers and /metrics.

Budgets are written N/h, so that no token comes back while the module runs: counts are exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.rates import Rate
from config.settings import settings_to_env
from testkit.serving import stop, wait_until_answering

from .conftest import ROOT, wait_for
from .test_api_access import (
    ADMIN,
    ADMIN_KEY,
    ISSUED,
    access_settings,
    assert_no_key_in,
    bearer,
    clear_rate_limits,
    key_id_of,
    no_key_in_the_logs,  # noqa: F401 (autouse: the in-process logs of this module's tests)
    remember,
)

pytestmark = pytest.mark.integration

READS = Rate(10, 3600.0)
WRITES = Rate(6, 3600.0)
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"unparsed": raw})
        return lines


def _start(name: str, env: dict[str, str], log_dir: Path) -> ApiProcess:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "run_api.py"), "--port", str(port), "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ApiProcess(name, f"http://127.0.0.1:{port}", process, log_path)


@pytest.fixture(scope="module")
def processes(base_settings, tmp_path_factory) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    settings = access_settings(
        base_settings, rate_limit_reads=READS, rate_limit_writes=WRITES, api_workers=2
    )
    asyncio.run(clear_rate_limits(settings))
    env = {**os.environ, **settings_to_env(settings), "LOG_LEVEL": "info", "LOG_FORMAT": "json"}
    log_dir = tmp_path_factory.mktemp("api-logs")
    started = [_start(name, env, log_dir) for name in ("api-a", "api-b")]
    try:
        for api in started:
            try:
                wait_until_answering(api.url, api.process, timeout_s=START_TIMEOUT_S, what=api.name)
            except RuntimeError as failed:
                raise AssertionError(f"{failed}\n{api.log_path.read_text()}") from None
        yield started[0], started[1]
    finally:
        for api in started:
            stop(api.process, timeout_s=30)


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, api: ApiProcess, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, str], Any, str]:
    async with http.request(method, api.url + path, **kwargs) as response:
        text = await response.text()
        body = json.loads(text) if text and response.content_type == "application/json" else None
        return response.status, dict(response.headers), body, text


async def new_user(http: aiohttp.ClientSession, api: ApiProcess) -> tuple[str, str]:
    """A user signed up through `api` by the admin key (exempt from budgets): id and key."""
    email = f"{uuid.uuid4().hex}@example.com"
    status, _, body, text = await call(
        http, api, "POST", "/users", json={"username": "ann", "email": email}, headers=ADMIN
    )
    assert status == 201, text
    return body["user_id"], remember(body["api_key"])


# -- revocation ----------------------------------------------------------------------------------


async def test_a_key_revoked_through_one_process_is_refused_by_the_other(processes, http):
    a, b = processes
    user_id, first = await new_user(http, a)
    status, _, added, _ = await call(
        http, a, "POST", f"/users/{user_id}/api-keys", headers=bearer(first)
    )
    assert status == 201
    doomed = remember(added["api_key"])
    # Both processes know the key now (each remembers it for up to a second).
    for api in (a, b):
        assert (await call(http, api, "GET", "/products", headers=bearer(doomed)))[0] == 200
    status, *_ = await call(
        http, a, "DELETE", f"/users/{user_id}/api-keys/{key_id_of(doomed)}", headers=bearer(first)
    )
    assert status == 204
    revoked_at = time.monotonic()
    # The revoking process refuses it at once.
    status, headers, _, _ = await call(http, a, "GET", "/products", headers=bearer(doomed))
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")

    async def refused_by_b() -> bool:
        status, *_ = await call(http, b, "GET", "/products", headers=bearer(doomed))
        assert status in (200, 401, 429)
        return status in (401, 429)

    await wait_for(refused_by_b, timeout_s=30, interval_s=0.05)
    observed_s = time.monotonic() - revoked_at  # for the log; the bound is unit-tested
    print(f"revoked key refused by the other process after {observed_s:.3f} s")
    # The user's other key still works in both.
    for api in (a, b):
        assert (await call(http, api, "GET", "/products", headers=bearer(first)))[0] == 200


# -- shared budgets ------------------------------------------------------------------------------


async def test_a_keys_read_budget_is_shared_by_the_two_processes(processes, http):
    a, b = processes
    _, key = await new_user(http, a)
    answers = []
    for number in range(READS.limit + 2):
        api = (a, b)[number % 2]
        status, headers, _, _ = await call(http, api, "GET", "/products", headers=bearer(key))
        answers.append((api.name, status, headers.get("RateLimit-Remaining")))
    assert [status for _, status, _ in answers] == [200] * READS.limit + [429, 429]
    # One count for both: each process's answers continue the other's.
    assert [left for _, _, left in answers[: READS.limit]] == [
        str(n) for n in range(READS.limit - 1, -1, -1)
    ]
    assert {name for name, status, _ in answers if status == 429} == {"api-a", "api-b"}


async def test_a_keys_write_budget_is_shared_by_the_two_processes(processes, http):
    a, b = processes
    _, key = await new_user(http, a)
    statuses = []
    for number in range(WRITES.limit + 2):
        api = (a, b)[number % 2]
        product = {"product_name": f"Lamp {number}", "product_price": 10}
        status, headers, _, text = await call(
            http, api, "POST", "/products", json=product, headers=bearer(key)
        )
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert json.loads(text)["status"] == "error"
    assert statuses == [201] * WRITES.limit + [429, 429]


# -- security: the whole module's logs -----------------------------------------------------------


async def test_the_processes_logs_answers_and_metrics_hold_no_key_nor_its_hash(processes, http):
    """A full run through both processes (sign-ups, more keys, reads, writes, replays, refusals
    of every kind, revocation), then every key the module issued is looked for in everything
    the processes logged, answered and exported."""
    a, b = processes
    answers: list[str] = []

    async def record(api: ApiProcess, method: str, path: str, **kwargs: Any) -> Any:
        status, _, body, text = await call(http, api, method, path, **kwargs)
        if status >= 400:  # error bodies; the 201s are where keys are shown, once
            answers.append(text)
        return status, body

    user_id, key = await new_user(http, a)
    status, added = await record(b, "POST", f"/users/{user_id}/api-keys", headers=bearer(key))
    assert status == 201
    second = remember(added["api_key"])
    signup_key = str(uuid.uuid4())
    body = {"username": "bo", "email": f"{uuid.uuid4().hex}@example.com"}
    status, signed = await record(
        a, "POST", "/users", json=body, headers={**ADMIN, "Idempotency-Key": signup_key}
    )
    remember(signed["api_key"])
    await record(b, "POST", "/users", json=body, headers={**ADMIN, "Idempotency-Key": signup_key})
    product = {"product_name": "Mug", "product_price": 3}
    status, created = await record(a, "POST", "/products", json=product, headers=bearer(key))
    assert status == 201
    for api in (a, b):
        await record(api, "GET", f"/products/{created['product_id']}", headers=bearer(second))
        await record(
            api, "GET", f"/products/{created['product_id']}", headers=bearer(signed["api_key"])
        )
        await record(api, "GET", f"/users/{user_id}/api-keys", headers=bearer(key))
        await record(api, "GET", "/products", headers={"Authorization": f"Bearer {key}x"})
        await record(api, "GET", "/products", headers={"Authorization": key})
        await record(api, "GET", f"/users/{user_id}/api-keys/{key}")  # a key pasted in a URL
        await record(api, "DELETE", f"/users/{user_id}/api-keys/{key}", headers=bearer(second))
        await record(api, "POST", "/products", data=b"{not json", headers=bearer(key))
    await record(a, "DELETE", f"/users/{user_id}/api-keys/{key_id_of(second)}", headers=bearer(key))
    for api in (a, b):
        await record(api, "GET", "/products", headers=bearer(second))  # revoked
        for _ in range(READS.limit + 1):  # the address budget runs out: 429s
            await record(
                api, "GET", "/products", headers=bearer("catk_" + "0" * 16 + "_" + "A" * 43)
            )
        answers.append((await call(http, api, "GET", "/metrics"))[3])

    lines = [line for api in (a, b) for line in api.log_lines()]
    logged = "\n".join(api.log_path.read_text(errors="replace") for api in (a, b))
    assert ADMIN_KEY in ISSUED
    assert len(ISSUED) > 3
    assert len(answers) > 20
    assert_no_key_in(logged, "processes' logs")
    assert_no_key_in("\n".join(answers), "error bodies and /metrics")

    # The access log names the caller by its public ids.
    requests = [line for line in lines if line.get("event") == "http.request"]
    named = [line for line in requests if line.get("key_id") == key_id_of(key)]
    assert named
    assert {line["user_id"] for line in named} == {int(user_id)}
    assert {line.get("key_id") for line in requests if line.get("path") == "/users"} >= {"admin-1"}
