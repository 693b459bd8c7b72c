"""The hot path against its floor, for the hot-path targets of bench/report.py: server CPU time per
request (from /proc, steadier than requests/s on this small shared machine) of the real API's
GET /products/{id} next to a bare aiohttp + uvloop server (bench/floor_server.py) in one run.

Servers, one process each, all pinned to the same CPU (wrk, one thread, 32 connections, closed
loop, to another), on the same database (one of its own: DATABASE) and Redis db:

- ``floor``: bench/floor_server.py's fixed JSON body, of the size of a real cached product;
- ``deployed_hit``: the API as deployed by default, every feature on: AUTH_MODE=api_key, each
  GET sending a user's key (read limit RATE_LIMIT_READS=1000000/s, never reached: every GET must
  answer 200), the access log at LOG_LEVEL=info written to a file; 100 warmed products of that
  user, answered from its in-process tier: what the in-process-hit target is measured on;
- ``local_hit``: the API with AUTH_MODE=off and LOG_LEVEL=warning (the access layer and the
  access log off, as the other APIs here), 100 warmed products, from its in-process tier: the
  framework-level cost alone, and the base of ``events_hit``;
- ``redis_hit``: an API like ``local_hit`` with LOCAL_CACHE_MAX_ITEMS=0, the same products answered from Redis
  (X-Cache: HIT checked before and after);
- ``miss``: another, LOCAL_CACHE_MAX_ITEMS=0, reading ids no cache holds: thousands of copies of
  a seeded row, each round's ids taken in order and never twice in a round, their Redis keys deleted
  after each run (outside the measured region). Every request is a real miss, Redis GET, PostgreSQL,
  render, SET NX: checked per run by counting the keys its fills left (one per answered request)
  and by X-Cache: MISS before;
- ``asyncpg``: the floor server's bare asyncpg fetch of the same rows (``/products/{id}/row``);
- ``events_hit``: another like ``local_hit`` with EVENT_STREAMS live event streams
  (``GET /products/{id}/events``) open on the products being read, for the whole run: the events
  feature's cost on the cached read, as the median per-round ratio to ``local_hit``.

Rounds interleave, their order alternating from one round to the next, after a discarded warm-up
run of each; the ratios to the floor are medians of the per-round ratios. Then a py-spy profile of
``local_hit`` under the same load (a separate run, not measured; native frames included), reduced
to its top functions by self and inclusive samples; then ``run_api.py --workers 2``
(API_WORKERS=2, unpinned, both cores) against the single pinned ``local_hit`` process, wrk at 64
connections, interleaved: requests/s, p99 and the CPU per request of all its processes.

A round where Redis went away (restarted by a test elsewhere on the machine: run id changed), the
Redis-tier hits were not all Redis hits (keyspace hits over the run) or the misses not all misses
is discarded and run again once the caches are warm again (listed in the result).

Writes bench/results/hot_path.json. Fails only if the benchmark itself breaks (a server does not
start, wrk errors, an error status, a hit that is not a hit or a miss that is not a miss); skipped
when wrk is not installed. Timings never fail it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from bench.api_process import (
    ApiClient,
    admin_key,
    bearer,
    bench_env,
    fresh_database,
    running_api,
)
from bench.conftest import QUICK, ROOT, free_port, write_result
from bench.event_streams import open_event_streams
from bench.proc_cpu import cpu_seconds
from bench.wrk import CpuPlan, cpu_plan, run_wrk, summary_of_rounds, wrk_path
from catalogue.cache import product_key  # the key the API caches a product under
from config import Settings
from testkit.serving import stop, wait_until_answering

DURATION_S = 1 if QUICK else 2  # short rounds, many: a noisy second spoils one round, not a run
WARMUP_S = 1  # a discarded run of each scenario before the rounds
ROUNDS = 5 if QUICK else 11
CONNECTIONS = 32
WORKERS = 2
WORKERS_CONNECTIONS = 64
WORKERS_ROUNDS = 2 if QUICK else 5
WORKERS_DURATION_S = 1 if QUICK else 3
PROFILE_S = 3 if QUICK else 10
PROFILE_RATE_HZ = 200
PROFILE_TOP = 15
TRUNK_SHARE = 0.95  # a frame in this share of the samples is the loop's trunk, not a hot spot
PRODUCTS = 100
EVENT_STREAMS = 16
MISS_ROWS_MIN = 10_000  # copies of a seeded row for the miss path; more if a round could need them
REDIS_DB = 10  # the other benchmarks use 11-14, the integration tests 15
# A database of its own, made and emptied here: the miss path's thousands of rows stay out of the
# other benchmarks' (catalogue_bench), and a run of those elsewhere on the machine, which empties
# theirs at its start, cannot take this run's rows away midway.
DATABASE = "catalogue_bench_hot_path"
START_TIMEOUT_S = 30.0
MAX_DISCARDED = ROUNDS  # rounds run again (see test_hot_path) before the benchmark gives up
DEFAULTS = Settings()

READ_LIMIT = "1000000/s"  # deployed_hit's: never reached (~50 times what one process serves)
# (key, label, target: at most this many times the floor's CPU per request, or None)
SCENARIOS: list[tuple[str, str, float | None]] = [
    ("floor", "floor: bare aiohttp + uvloop, fixed body", None),
    ("deployed_hit", "API as deployed, in-process-tier hit: key checked, access log on", 1.3),
    ("local_hit", "API, in-process-tier hit, AUTH_MODE=off, access log off", None),
    ("redis_hit", "API, Redis-tier hit (LOCAL_CACHE_MAX_ITEMS=0), AUTH_MODE=off, no log", 2.0),
    ("miss", "API, miss (PostgreSQL)", None),
    ("asyncpg", "floor + one bare asyncpg fetch of the row", None),
    ("events_hit", f"API, in-process-tier hit, {EVENT_STREAMS} live event streams open", None),
]
# Events add no measurable cost to the cached read: at most this many times local_hit's CPU.
EVENTS_TARGET = 1.05

pytestmark = pytest.mark.skipif(
    wrk_path() is None,
    reason="wrk is not installed (Debian package 'wrk'): the hot-path benchmark needs it",
)


@dataclass
class Servers:
    deployed: ApiClient
    local: ApiClient
    redis: ApiClient
    miss: ApiClient
    events: ApiClient
    floor_url: str
    pids: dict[str, int]  # scenario key -> the pid whose CPU it reads
    plan: CpuPlan
    body_bytes: int
    miss_ids: list[int]
    local_env: dict[str, str]


def _get(url: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    """One request on a new connection (wrk-like: any of several processes may answer)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


@contextlib.contextmanager
def running_floor(
    env: dict[str, str], body_bytes: int, *, command_prefix: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(
        [
            *command_prefix,
            sys.executable,
            "-m",
            "bench.floor_server",
            "--port",
            str(port),
            "--body-bytes",
            str(body_bytes),
            "--postgres-url",
            env["POSTGRES_URL"],
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(
            url,
            process,
            path="/products/0",
            timeout_s=START_TIMEOUT_S,
            what="bench/floor_server.py",
        )
        yield url, process
    finally:
        stop(process)


@contextlib.contextmanager
def running_workers(env: dict[str, str], workers: int) -> Iterator[tuple[str, int]]:
    """run_api.py --workers N, unpinned (bench/api_process.py starts one process only). The
    cache is not flushed: it shares the Redis db of the APIs still running."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "run_api.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env={**env, "API_WORKERS": str(workers)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url, process, timeout_s=START_TIMEOUT_S, what="run_api.py --workers")
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(_descendants(process.pid)) < workers:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"run_api.py started {_descendants(process.pid)}, not {workers}")
            time.sleep(0.05)
        yield url, process.pid
    finally:
        stop(process)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (its children, theirs, ...), from /proc."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parents[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


def _copy_rows(postgres_url: str, source_id: int, count: int) -> list[int]:
    """`count` copies of product `source_id` (every column but the id): rows of the same size
    and shape for the miss path, made in one statement."""

    async def copy() -> list[int]:
        conn = await asyncpg.connect(postgres_url)
        try:
            columns = await conn.fetch(
                """SELECT column_name FROM information_schema.columns
                    WHERE table_schema = current_schema() AND table_name = 'products'
                      AND is_identity = 'NO' AND is_generated = 'NEVER'
                    ORDER BY ordinal_position"""
            )
            names = ", ".join(f'"{row["column_name"]}"' for row in columns)
            rows = await conn.fetch(
                f"INSERT INTO products ({names}) SELECT {names} FROM products,"
                " generate_series(1, $2::int) WHERE id = $1 RETURNING id",
                source_id,
                count,
            )
            return sorted(row["id"] for row in rows)
        finally:
            await conn.close()

    return asyncio.run(copy())


def _forget(client: ApiClient, product_ids: Sequence[int]) -> int:
    """Deletes the Redis keys of `product_ids`; how many there were."""
    deleted = 0
    for start in range(0, len(product_ids), 5000):
        keys = [product_key(i) for i in product_ids[start : start + 5000]]
        deleted += int(client.redis.delete(*keys))
    return deleted


def _redis_state(client: ApiClient) -> tuple[str, int] | None:
    """The Redis server's run id (new at each start) and its keyspace hits; None if down."""
    try:
        return str(client.redis.info("server")["run_id"]), int(
            client.redis.info("stats")["keyspace_hits"]
        )
    except redis.RedisError:
        return None


def _recover(servers: Servers) -> None:
    """After a Redis outage: Redis answering, the APIs past their bypass window (1 s), every
    cache tier warm again and no miss-path id left cached."""
    deadline = time.monotonic() + 60
    while _redis_state(servers.miss) is None:
        assert time.monotonic() < deadline, "Redis down for 60 s"
        time.sleep(0.5)
    time.sleep(1.5)
    servers.deployed.warm(servers.deployed.product_ids)
    servers.local.warm(servers.local.product_ids)
    servers.redis.warm(servers.redis.product_ids)
    servers.events.warm(servers.events.product_ids)
    _forget(servers.miss, servers.miss_ids)


def _checked(client: ApiClient, product_id: int, expected: set[str]) -> bytes:
    status, body, cache = client.request("GET", f"/products/{product_id}")
    assert status == 200, body
    assert cache in expected, f"product {product_id}: X-Cache {cache}, expected {expected}"
    return body


@pytest.fixture(scope="module")
def servers(stack_env, tmp_path_factory) -> Iterator[Servers]:
    images = str(tmp_path_factory.mktemp("images"))
    database = fresh_database(stack_env["POSTGRES_URL"], DATABASE)

    def env(local_items: int) -> dict[str, str]:
        return bench_env(
            stack_env,
            redis_db=REDIS_DB,
            images_dir=images,
            auth_mode="off",  # the open contract, as bench/test_bench_throughput.py
            extra={"POSTGRES_URL": database, "LOCAL_CACHE_MAX_ITEMS": str(local_items)},
        )

    local_env = env(DEFAULTS.local_cache_max_items)
    admin = admin_key()
    deployed_env = bench_env(
        stack_env,
        redis_db=REDIS_DB,
        images_dir=images,
        auth_mode="api_key",
        extra={
            "POSTGRES_URL": database,
            "ADMIN_API_KEYS": admin,
            "RATE_LIMIT_READS": READ_LIMIT,
            "LOG_LEVEL": "info",
            # The product's defaults, whatever the caller's shell says.
            "LOCAL_CACHE_MAX_ITEMS": str(DEFAULTS.local_cache_max_items),
            "USER_SIGNUP": DEFAULTS.user_signup,
            "PRODUCT_READS": DEFAULTS.product_reads,
            "LOG_FORMAT": DEFAULTS.log_format,
        },
    )
    plan = cpu_plan()
    prefix = plan.prefix(plan.server)
    access_log = str(tmp_path_factory.mktemp("logs") / "deployed_hit.log")
    with contextlib.ExitStack() as stack:
        deployed, deployed_process = stack.enter_context(
            running_api(deployed_env, command_prefix=prefix, log_path=access_log)
        )
        local, local_process = stack.enter_context(running_api(local_env, command_prefix=prefix))
        redis_api, redis_process = stack.enter_context(running_api(env(0), command_prefix=prefix))
        miss, miss_process = stack.enter_context(running_api(env(0), command_prefix=prefix))
        events, events_process = stack.enter_context(running_api(local_env, command_prefix=prefix))
        local.seed(PRODUCTS, name="hotpath", price=lambda i: 10 + i % 40)
        # Its own user's products (the same size), read with that user's key.
        deployed.seed_key = admin
        deployed.seed(PRODUCTS, name="hotpath", price=lambda i: 10 + i % 40)
        assert deployed.api_key is not None, "POST /users answered no key"
        deployed.warm(deployed.product_ids)
        # The access log is on: the warm-up's GETs are in it, by the user's key id, never the key.
        log_text = Path(access_log).read_text()
        assert '"event":"http.request"' in log_text, log_text[-2000:]
        assert deployed.api_key not in log_text
        for client in (redis_api, miss, events):
            client.user_id, client.product_ids = local.user_id, list(local.product_ids)
        local.warm(local.product_ids)
        redis_api.warm(redis_api.product_ids)
        events.warm(events.product_ids)
        stack.enter_context(open_event_streams(events.port, events.product_ids[:EVENT_STREAMS]))
        bodies = [_checked(local, i, {"HIT"}) for i in local.product_ids]
        _checked(events, events.product_ids[0], {"HIT"})
        body_bytes = round(statistics.median(len(body) for body in bodies))

        miss_ids = _copy_rows(local_env["POSTGRES_URL"], local.product_ids[0], MISS_ROWS_MIN)
        # A miss really is one: MISS, then its fill is forgotten again.
        _checked(miss, miss_ids[-1], {"MISS"})
        assert _forget(miss, [miss_ids[-1]]) == 1

        floor_url, floor_process = stack.enter_context(
            running_floor(local_env, body_bytes, command_prefix=prefix)
        )
        for path in ("/products/1", f"/products/{miss_ids[0]}/row"):
            status, body, _ = _get(floor_url, path)
            assert status == 200, (path, status, body)
            assert len(body) == body_bytes, (path, len(body), body_bytes)
        assert _get(floor_url, "/products/0/row")[0] == 404

        pids = {
            "floor": floor_process.pid,
            "deployed_hit": deployed_process.pid,
            "local_hit": local_process.pid,
            "redis_hit": redis_process.pid,
            "miss": miss_process.pid,
            "asyncpg": floor_process.pid,
            "events_hit": events_process.pid,
        }
        if plan.pinned:  # taskset exec'd the interpreters: the pids are the servers' own
            for pid in set(pids.values()):
                assert os.sched_getaffinity(pid) == {plan.server}, pid
        yield Servers(
            deployed,
            local,
            redis_api,
            miss,
            events,
            floor_url,
            pids,
            plan,
            body_bytes,
            miss_ids,
            local_env,
        )


def _measured(
    url: str,
    pids: Sequence[int],
    script_args: list[str],
    *,
    duration_s: int,
    connections: int,
    cpu_prefix: list[str],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One wrk run (`headers` with every request) and the CPU time `pids` spent over it, per
    request."""
    before = sum(cpu_seconds(pid) for pid in pids)
    result = run_wrk(
        url,
        script_args,
        duration_s=duration_s,
        connections=connections,
        cpu_prefix=cpu_prefix,
        headers=headers,
    )
    cpu_s = sum(cpu_seconds(pid) for pid in pids) - before
    result["cpu_us_per_request"] = cpu_s / max(1, result["requests"]) * 1e6
    assert result["requests"] > 0, f"{url}: no request\n{result['output']}"
    assert result["errors"] == 0, f"{url}: errors\n{result['output']}"
    return result


def _frame_name(frame: str) -> str:
    """py-spy's `function (path:line)` with the path shortened to the project's or a package's."""
    match = re.fullmatch(r"(.*) \((.*?)(?::(\d+))?\)", frame)
    if not match:
        return frame
    function, path, line = match.groups()
    root = f"{ROOT}/"
    if path.startswith(root):
        path = path.removeprefix(root)
    elif "site-packages/" in path:
        path = path.rsplit("site-packages/", 1)[1]
    elif "/lib/python" in path:
        path = "stdlib/" + path.rsplit("/lib/python", 1)[1].split("/", 1)[-1]
    return f"{function} ({path}:{line})" if line else f"{function} ({path})"


def reduce_profile(raw: str, top: int = PROFILE_TOP) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks, one `frame;frame;… count` a line, outermost first, native
    frames (C: uvloop, aiohttp's parser, libc's syscalls) among the Python ones. The top functions:

    - ``self``: by self samples, the innermost frame (a syscall, a C function or Python code);
    - ``self_python``: by the innermost Python frame, what the C below it did included (py-spy's
      view without --native);
    - ``inclusive``: Python functions by samples anywhere in the stack (once per stack however
      deep it recurses), leaving out the trunk every sample shares (run_app: ``trunk``).

    Each ``self`` entry names the innermost Python frame it was most often under (``under``)."""
    own: collections.Counter[str] = collections.Counter()
    callers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    own_python: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        python = [frame for frame in frames if re.search(r"\.py(:\d+)?\)$", frame)]
        own_python[python[-1] if python else frames[-1]] += count
        if python and python[-1] != frames[-1]:
            callers[frames[-1]][python[-1]] += count
        for frame in set(python):
            inclusive[frame] += count
    trunk = {name for name, n in inclusive.items() if n >= TRUNK_SHARE * total}
    for name in trunk:
        del inclusive[name]

    def rows(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "share": n / total if total else 0.0}
            for name, n in counter.most_common(top)
        ]

    self_rows = rows(own)
    for row in self_rows:
        if callers.get(row["function"]):
            row["under"] = callers[row["function"]].most_common(1)[0][0]
    return {
        "samples": total,
        "self": self_rows,
        "self_python": rows(own_python),
        "inclusive": rows(inclusive),
        "trunk": sorted(trunk),
    }


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _profile(servers: Servers) -> dict[str, Any]:
    """py-spy on the API as deployed (the in-process-hit target's) under the rounds' load (a run
    of its own, unmeasured: sampling stops the process at each sample)."""
    spy = _py_spy()
    info: dict[str, Any] = {
        "tool": "py-spy",
        "rate_hz": PROFILE_RATE_HZ,
        "duration_s": PROFILE_S,
        "connections": CONNECTIONS,
        "scenario": "deployed_hit",
    }
    if spy is None:
        return {**info, "error": "py-spy is not installed (requirements-dev.txt)"}
    version = subprocess.run([spy, "--version"], capture_output=True, text=True, check=False)
    info["version"] = version.stdout.strip()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "profile.txt"
        process = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(servers.pids["deployed_hit"]),
                "--rate",
                str(PROFILE_RATE_HZ),
                "--duration",
                str(PROFILE_S),
                "--function",  # samples by function, not by line
                "--native",  # C frames too: where uvloop and the syscalls spend it
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.3)  # attached before the load starts
        deployed = servers.deployed
        load = run_wrk(
            deployed.url,
            ["get", *map(str, deployed.product_ids)],
            duration_s=PROFILE_S + 1,
            connections=CONNECTIONS,
            cpu_prefix=servers.plan.prefix(servers.plan.client),
            headers=bearer(deployed.api_key),
        )
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        assert load["errors"] == 0, load["output"]
        if process.returncode != 0 or not out.exists():
            return {**info, "error": f"py-spy failed ({process.returncode}): {output[-2000:]}"}
        return {**info, "rps_under_profile": load["rps"], **reduce_profile(out.read_text())}


def test_hot_path(servers: Servers) -> None:
    hit_ids = [str(i) for i in servers.local.product_ids]
    cpu_prefix = servers.plan.prefix(servers.plan.client)
    miss_ids = servers.miss_ids
    local, redis_api, miss = servers.local, servers.redis, servers.miss

    deployed = servers.deployed
    deployed_ids = [str(i) for i in deployed.product_ids]

    def scenario_args(key: str) -> tuple[str, list[str], dict[str, str]]:
        if key == "floor":
            return servers.floor_url, ["get", *hit_ids], {}
        if key == "deployed_hit":
            return deployed.url, ["get", *deployed_ids], bearer(deployed.api_key)
        if key == "local_hit":
            return local.url, ["get", *hit_ids], {}
        if key == "redis_hit":
            return redis_api.url, ["get", *hit_ids], {}
        if key == "miss":
            return miss.url, ["get", *map(str, miss_ids)], {}
        if key == "events_hit":
            return servers.events.url, ["get", *hit_ids], {}
        return servers.floor_url, ["get", *(f"{i}/row" for i in miss_ids)], {}

    miss_shares: list[float] = []

    def run(key: str, duration_s: int) -> tuple[dict[str, Any], str | None]:
        """One measured run, and what makes it unfit to keep (None: nothing)."""
        url, args, headers = scenario_args(key)
        before = _redis_state(miss) if key == "redis_hit" else None
        result = _measured(
            url,
            [servers.pids[key]],
            args,
            duration_s=duration_s,
            connections=CONNECTIONS,
            cpu_prefix=cpu_prefix,
            headers=headers,
        )
        requests = result["requests"]
        if key == "redis_hit":
            # Every answer a Redis GET that found its key: as many keyspace hits at least (other
            # clients only add to them), on the same Redis server (a restart resets the count).
            after = _redis_state(miss)
            if before is None or after is None or after[0] != before[0]:
                return result, "redis_hit: Redis restarted or unreachable"
            if after[1] - before[1] < requests:
                return result, f"redis_hit: {requests} answers, {after[1] - before[1]} Redis hits"
        if key == "miss":
            # wrk's script takes the ids in order: the first `requests` (and up to one more per
            # connection, sent but unanswered at the end) were read, each once. Every answered
            # one left its fill in Redis, unless it was no miss (Redis down: BYPASS, no fill).
            filled = _forget(miss, miss_ids[: requests + 2 * CONNECTIONS])
            if requests + CONNECTIONS > len(miss_ids):
                miss_ids.extend(
                    _copy_rows(servers.local_env["POSTGRES_URL"], miss_ids[0], 2 * requests)
                )
                return result, f"miss: {requests} answers, only {len(miss_ids)} rows"
            if filled < requests:
                return result, f"miss: {requests} answers, only {filled} cache fills"
            miss_shares.append(min(filled, requests) / requests)
        return result, None

    keys = [key for key, _, _ in SCENARIOS]
    for key in keys:  # warm-up, discarded
        warm, _ = run(key, WARMUP_S)
        if key == "miss":
            # Enough rows that no round reads an id twice, with room for a faster server.
            wanted = int(warm["rps"] * DURATION_S * 3) + 1000
            if wanted > len(miss_ids):
                miss_ids += _copy_rows(
                    servers.local_env["POSTGRES_URL"], miss_ids[0], wanted - len(miss_ids)
                )
    # A round some run of which was unfit (Redis restarted by a test elsewhere on the machine,
    # say) is discarded whole and run again, after the caches are warm again; too many of those
    # and the benchmark is broken.
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    discarded: list[str] = []
    attempt = 0
    while len(runs["floor"]) < ROUNDS:
        order = keys if attempt % 2 == 0 else keys[::-1]
        attempt += 1
        server_before = _redis_state(miss)
        results: dict[str, dict[str, Any]] = {}
        problem = None if server_before else "Redis unreachable"
        for key in order:
            if problem:
                break
            results[key], problem = run(key, DURATION_S)
        server_after = _redis_state(miss)
        if not problem and (not server_after or server_after[0] != server_before[0]):
            problem = "Redis restarted or unreachable"
        if problem is None:
            for key, result in results.items():
                runs[key].append(result)
            continue
        discarded.append(problem)
        print(f"round discarded: {problem}")
        assert len(discarded) <= MAX_DISCARDED, f"too many rounds discarded: {discarded}"
        _recover(servers)

    # After: the hits still hits, a miss still a miss.
    for product_id in deployed.product_ids[:: PRODUCTS // 10]:
        _checked(deployed, product_id, {"HIT"})
    for product_id in local.product_ids[:: PRODUCTS // 10]:
        _checked(local, product_id, {"HIT"})
        _checked(redis_api, product_id, {"HIT"})
    _checked(miss, miss_ids[-1], {"MISS"})
    _forget(miss, [miss_ids[-1]])

    def over(key: str, base: str, field: str = "cpu_us_per_request") -> list[float]:
        return [run[field] / floor[field] for run, floor in zip(runs[key], runs[base], strict=True)]

    summaries: dict[str, dict[str, Any]] = {}
    for key, label, target in SCENARIOS:
        row = {"label": label, "target_over_floor_cpu": target, **summary_of_rounds(runs[key])}
        cpu_rounds = over(key, "floor")
        rps_rounds = over(key, "floor", "rps")  # < 1 when slower than the floor
        row |= {
            "over_floor_cpu": statistics.median(cpu_rounds),
            "over_floor_cpu_rounds": cpu_rounds,
            "over_floor_rps": statistics.median(rps_rounds),
            "over_floor_rps_rounds": rps_rounds,
        }
        summaries[key] = row
    miss_over_asyncpg = over("miss", "asyncpg")
    summaries["miss"]["over_asyncpg_cpu"] = statistics.median(miss_over_asyncpg)
    summaries["miss"]["over_asyncpg_cpu_rounds"] = miss_over_asyncpg
    summaries["miss"]["miss_share"] = min(miss_shares)
    events_over_local = over("events_hit", "local_hit")
    summaries["events_hit"]["over_local_hit_cpu"] = statistics.median(events_over_local)
    summaries["events_hit"]["over_local_hit_cpu_rounds"] = events_over_local
    summaries["events_hit"]["target_over_local_hit_cpu"] = EVENTS_TARGET
    summaries["events_hit"]["event_streams"] = EVENT_STREAMS

    profile = _profile(servers)
    workers = _workers(servers, hit_ids)

    path = write_result(
        "hot_path",
        {
            "tool": "wrk",
            "threads": 1,
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "warmup_s": WARMUP_S,
            "rounds": ROUNDS,
            "pinned": servers.plan.pinned,
            "body_bytes": servers.body_bytes,
            "products": PRODUCTS,
            "miss_rows": len(miss_ids),
            "discarded_rounds": discarded,
            "scenarios": summaries,
            "profile": profile,
            "workers": workers,
        },
    )
    print(
        f"\nwrk -t1 -c{CONNECTIONS} -d{DURATION_S}s × {ROUNDS} interleaved rounds,"
        f" pinned: {servers.plan.pinned}, body {servers.body_bytes} B ({path})"
    )
    for key, row in summaries.items():
        print(
            f"{key:<10} {row['rps']:>8.0f} req/s  p99 {row['p99_ms']:6.2f} ms"
            f"  {row['cpu_us_per_request']:7.1f} µs CPU/request  × floor"
            f" {row['over_floor_cpu']:.2f}"
            f"  (rounds: {' '.join(f'{r:.2f}' for r in row['over_floor_cpu_rounds'])})"
        )
    print(f"miss / bare asyncpg: {summaries['miss']['over_asyncpg_cpu']:.2f}× CPU per request")
    print(
        f"with {EVENT_STREAMS} event streams / without:"
        f" {summaries['events_hit']['over_local_hit_cpu']:.2f}× CPU per request"
    )
    for entry in profile.get("self", [])[:10]:
        print(f"  self {entry['share']:6.1%}  {entry['function']}")
    if "error" in profile:
        print(f"profile: {profile['error']}")
    for key, row in workers["scenarios"].items():
        print(
            f"{key:<16} c{WORKERS_CONNECTIONS} {row['rps']:>8.0f} req/s  p99 {row['p99_ms']:.2f} ms"
            f"  {row['cpu_us_per_request']:.1f} µs CPU/request"
        )


def _workers(servers: Servers, ids: list[str]) -> dict[str, Any]:
    """run_api.py --workers 2 on both cores against the single pinned in-process-hit API, wrk
    unpinned at 64 connections, interleaved rounds."""
    with running_workers(servers.local_env, WORKERS) as (url, parent):
        pids = [parent, *_descendants(parent)]
        # A first run fills every process's memory (wrk's connections reach all of them).
        _measured(
            url,
            pids,
            ["get", *ids],
            duration_s=WARMUP_S,
            connections=WORKERS_CONNECTIONS,
            cpu_prefix=[],
        )
        for product_id in ids[:: PRODUCTS // 10]:
            status, body, headers = _get(url, f"/products/{product_id}")
            assert status == 200, body
            assert headers.get("X-Cache") == "HIT", headers
        targets = {
            f"API_WORKERS={WORKERS}": (url, pids),
            "API_WORKERS=1": (servers.local.url, [servers.pids["local_hit"]]),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        order = list(targets)
        for round_number in range(WORKERS_ROUNDS):
            for name in order if round_number % 2 == 0 else reversed(order):
                target_url, target_pids = targets[name]
                runs[name].append(
                    _measured(
                        target_url,
                        target_pids,
                        ["get", *ids],
                        duration_s=WORKERS_DURATION_S,
                        connections=WORKERS_CONNECTIONS,
                        cpu_prefix=[],
                    )
                )
        processes = len(pids)
    scaling = [
        many["rps"] / one["rps"] for many, one in zip(runs[order[0]], runs[order[1]], strict=True)
    ]
    return {
        "workers": WORKERS,
        "processes": processes,  # the parent and its children, whose CPU is summed
        "connections": WORKERS_CONNECTIONS,
        "duration_s": WORKERS_DURATION_S,
        "rounds": WORKERS_ROUNDS,
        "pinned": False,
        "scenarios": {name: summary_of_rounds(results) for name, results in runs.items()},
        "scaling": statistics.median(scaling),
        "scaling_rounds": scaling,
    }
