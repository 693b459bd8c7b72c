"""Which Redis client the Redis tier should use, by measurement: server CPU time per request (from
/proc) of bench/redis_client_server.py, a bare aiohttp + uvloop handler doing one Redis GET of a
~300-byte value, once per candidate of its CANDIDATES (redis-py with either pool, with and without
hiredis; coredis; valkey-glide; the product's coalescing into MGET over the best of them), next to
the same server with no Redis call (the floor), in one interleaved run.

The candidates run under bench/.venv-redis (made by scripts/bench from the server module's
REQUIREMENTS), never the project's .venv: none of them becomes a dependency by being measured.
Without that virtualenv the test fails and says how to make it; valkey-glide alone may be missing
(its wheel does not install everywhere), and is then reported as not measured.

Servers, one process each, pinned once started to the same CPU (wrk, one thread, 32 connections, closed
loop, on another, as bench/test_bench_hot_path.py), on Redis db REDIS_DB, KEYS keys of their own
seeded before and deleted after. Rounds interleave, their order alternating, after a warm-up;
per-candidate figures are medians over the rounds, ratios and differences to the floor medians
of the per-round ones. A round where a server answered an error (a 404: the keys are gone, say
flushed by another benchmark on this db; a 5xx: Redis went away) or Redis restarted is discarded
and run again once the keys are back.

Writes bench/results/redis_clients.json (its report section: bench/report_redis_clients.py).
Fails only if the benchmark breaks; skipped when wrk is not installed. Timings never fail it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.conftest import QUICK, ROOT, free_port, write_result
from bench.proc_cpu import cpu_seconds
from bench.redis_client_server import (
    CANDIDATES,
    DEFAULT_BODY_BYTES,
    REQUIREMENTS,
    Candidate,
    value_of,
)
from bench.report_redis_clients import section
from bench.wrk import CpuPlan, cpu_plan, run_wrk, summary_of_rounds, wrk_path
from testkit.serving import stop, wait_until_answering

VENV = ROOT / "bench" / ".venv-redis"
VENV_PYTHON = VENV / "bin" / "python"
REDIS_DB = 11
KEY_PREFIX = "bench:redis_clients:"
KEYS = 100
BODY_BYTES = DEFAULT_BODY_BYTES  # the issue's ~300-byte cached product
CONNECTIONS = 32
# Quick: 11 servers × 1 s a round, start-up included, within QUICK_BUDGET_S: 3 rounds when they
# fit, at least 2 (starting eleven interpreters takes 3 s on an idle machine, 7 on a busy one).
# No wrk warm-up then: each server has answered GETs before, its pool fills in the first ms.
DURATION_S = 1 if QUICK else 2
ROUNDS = 3 if QUICK else 7
MIN_ROUNDS = 2
QUICK_BUDGET_S = 40.0
WARMUP_S = 0 if QUICK else 1
MAX_DISCARDED = ROUNDS
START_TIMEOUT_S = 30.0
OPTIONAL = {"valkey-glide"}  # measured when its wheel installs and imports here

pytestmark = pytest.mark.skipif(
    wrk_path() is None,
    reason="wrk is not installed (Debian package 'wrk'): the Redis-client benchmark needs it",
)

_VERSIONS = """
import importlib, importlib.metadata, json, sys
names = sys.argv[1:]
found = {}
for name in names:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        found[name] = None
try:
    importlib.import_module("glide")
except Exception as exc:  # a wheel that installed but does not load here
    found["valkey-glide"] = None
    found["glide_error"] = repr(exc)
print(json.dumps(found))
"""


@dataclass
class Server:
    candidate: Candidate
    url: str
    process: subprocess.Popen[bytes]
    about: dict[str, Any]


def _missing_venv_message(problem: str) -> str:
    pins = " ".join(REQUIREMENTS)
    return (
        f"{problem}. The Redis-client benchmark runs its candidates in bench/.venv-redis, which"
        f" scripts/bench creates; to make it by hand: .venv/bin/python -m venv bench/.venv-redis"
        f" && bench/.venv-redis/bin/pip install {pins}"
    )


def _venv_packages() -> tuple[dict[str, str], dict[str, str]]:
    """The venv's versions of REQUIREMENTS, and the optional candidates not usable (reason);
    pytest.fail when the venv is missing or a required package is not at its pin."""
    if not VENV_PYTHON.exists():
        pytest.fail(
            _missing_venv_message(f"bench/.venv-redis is missing ({VENV_PYTHON} does not exist)"),
            pytrace=False,
        )
    pins = dict(requirement.split("==", 1) for requirement in REQUIREMENTS)
    done = subprocess.run(
        [str(VENV_PYTHON), "-c", _VERSIONS, *pins],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(_missing_venv_message(f"{VENV_PYTHON} failed: {done.stderr}"), pytrace=False)
    found = json.loads(done.stdout)
    unusable: dict[str, str] = {}
    for name, wanted in pins.items():
        if found.get(name) == wanted:
            continue
        problem = f"{name}=={wanted} wanted, {found.get(name) or 'not installed'} found"
        if name not in OPTIONAL:
            pytest.fail(_missing_venv_message(f"bench/.venv-redis: {problem}"), pytrace=False)
        unusable[name] = found.get("glide_error") or problem
    return {name: found[name] for name in pins if found.get(name)}, unusable


def _key(i: int) -> str:
    return f"{KEY_PREFIX}{i}"


def _seed(cache: redis.Redis) -> None:
    cache.mset({_key(i): value_of(BODY_BYTES) for i in range(1, KEYS + 1)})


def _redis_state(cache: redis.Redis) -> tuple[str, int] | None:
    """The Redis server's run id (new at each start) and pid; None when down."""
    try:
        info = cache.info("server")
    except redis.RedisError:
        return None
    return str(info["run_id"]), int(info["process_id"])


def _redis_cpu_s(pid: int) -> float | None:
    """redis-server's CPU time so far, when it runs here (loopback: it does; shared with every
    other client of it, so its per-request figure is only indicative)."""
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


def _get(url: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _json(url: str, path: str) -> dict[str, Any]:
    status, body = _get(url, path)
    assert status == 200, (url, path, status, body)
    return json.loads(body)


def _start(candidate: Candidate, redis_url: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A candidate's server, not pinned yet: eleven interpreters importing their clients on one
    core would take most of the quick run's budget."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(VENV_PYTHON),
            "-m",
            "bench.redis_client_server",
            "--candidate",
            candidate.name,
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--key-prefix",
            KEY_PREFIX,
            "--body-bytes",
            str(BODY_BYTES),
        ],
        cwd=ROOT,  # the repository on sys.path: catalogue.coalesced_get and catalogue.cache
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return f"http://127.0.0.1:{port}", process


def _checked_about(server: Server) -> None:
    """What runs is what the candidate says: the pool, the parser, the coalescing."""
    about, candidate = server.about, server.candidate
    assert about["candidate"] == candidate.name, about
    assert about["coalesced"] == candidate.coalesced, about
    if candidate.client == "redis-py":
        pool = "BlockingConnectionPool" if candidate.pool == "blocking" else "ConnectionPool"
        assert about["pool"] == pool, about
        assert about["hiredis_available"] == candidate.hiredis, about
        assert ("Hiredis" in about["parser"]) == candidate.hiredis, about


def _pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` onto `cpu` (glide's Rust runtime has threads of its own, started
    before this; threads started later inherit their creator's affinity)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})
    for task in Path(f"/proc/{pid}/task").iterdir():
        assert os.sched_getaffinity(int(task.name)) == {cpu}, (pid, task.name)


@contextlib.contextmanager
def running_servers(
    candidates: list[Candidate], redis_url: str, plan: CpuPlan
) -> Iterator[dict[str, Server]]:
    """All candidates' servers, started side by side, each answering every key right."""
    started: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    try:
        for candidate in candidates:
            started[candidate.name] = _start(candidate, redis_url)
        servers = {}
        for candidate in candidates:
            url, process = started[candidate.name]
            wait_until_answering(
                url,
                process,
                path="/about",
                timeout_s=START_TIMEOUT_S,
                what=f"bench/redis_client_server.py --candidate {candidate.name}",
            )
            server = servers[candidate.name] = Server(candidate, url, process, _json(url, "/about"))
            _checked_about(server)
            for i in (1, KEYS // 2, KEYS):
                assert _get(url, f"/products/{i}") == (200, value_of(BODY_BYTES)), candidate
        if plan.pinned:
            for _, process in started.values():
                _pin(process.pid, plan.server)
        yield servers
    finally:
        for _, process in started.values():
            stop(process)


def _measured(
    server: Server, redis_pid: int | None, duration_s: int, plan: CpuPlan
) -> dict[str, Any]:
    """One wrk run; the server's CPU (and redis-server's) per request over it, and for a
    coalesced candidate its Redis commands and keys (the batches)."""
    ids = [str(i) for i in range(1, KEYS + 1)]
    stats_before = _json(server.url, "/stats")
    redis_before = _redis_cpu_s(redis_pid) if redis_pid else None
    before = cpu_seconds(server.process.pid)
    result = run_wrk(
        server.url,
        ["get", *ids],
        duration_s=duration_s,
        connections=CONNECTIONS,
        cpu_prefix=plan.prefix(plan.client),
    )
    cpu_s = cpu_seconds(server.process.pid) - before
    redis_after = _redis_cpu_s(redis_pid) if redis_pid else None
    stats_after = _json(server.url, "/stats")
    requests = max(1, result["requests"])
    result["cpu_us_per_request"] = cpu_s / requests * 1e6
    if redis_before is not None and redis_after is not None:
        result["redis_cpu_us_per_request"] = (redis_after - redis_before) / requests * 1e6
    result["commands"] = stats_after["commands"] - stats_before["commands"]
    result["keys"] = stats_after["keys"] - stats_before["keys"]
    del result["output"]  # wrk's text: only for error messages
    return result


def _round(
    servers: dict[str, Server], order: list[str], cache: redis.Redis, plan: CpuPlan
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """One run of each server in `order`, and what makes the round unfit (None: nothing)."""
    state = _redis_state(cache)
    if state is None:
        return {}, "Redis unreachable"
    results = {}
    for name in order:
        result = results[name] = _measured(servers[name], state[1], DURATION_S, plan)
        if result["requests"] == 0 or result["errors"]:
            return results, f"{name}: {result['requests']} answers, {result['errors']} errors"
    if _redis_state(cache) != state:
        return results, "Redis restarted or unreachable"
    return results, None


def _recover(cache: redis.Redis, servers: dict[str, Server]) -> None:
    """After a discarded round: Redis answering, the keys seeded again, every server answering."""
    deadline = time.monotonic() + 60
    while _redis_state(cache) is None:
        assert time.monotonic() < deadline, "Redis down for 60 s"
        time.sleep(0.5)
    _seed(cache)
    for server in servers.values():
        while _get(server.url, "/products/1")[0] != 200:
            assert time.monotonic() < deadline, f"{server.candidate.name} not answering again"
            time.sleep(0.2)


def _summary(runs: list[dict[str, Any]], floor: list[dict[str, Any]]) -> dict[str, Any]:
    """A candidate's rounds against the floor's of the same rounds."""
    row = summary_of_rounds(runs)
    cpu = [run["cpu_us_per_request"] for run in runs]
    floor_cpu = [run["cpu_us_per_request"] for run in floor]
    over = [c / f for c, f in zip(cpu, floor_cpu, strict=True)]
    added = [c - f for c, f in zip(cpu, floor_cpu, strict=True)]
    rps_over = [run["rps"] / base["rps"] for run, base in zip(runs, floor, strict=True)]
    row |= {
        "over_floor_cpu": statistics.median(over),
        "over_floor_cpu_rounds": over,
        "get_us": statistics.median(added),  # the GET's CPU: the request's above the floor's
        "get_us_rounds": added,
        "over_floor_rps": statistics.median(rps_over),
    }
    redis_cpu = [
        run["redis_cpu_us_per_request"] for run in runs if "redis_cpu_us_per_request" in run
    ]
    if redis_cpu:
        row["redis_cpu_us_per_request"] = statistics.median(redis_cpu)
    commands = sum(run["commands"] for run in runs)
    if commands:
        row["keys_per_command"] = sum(run["keys"] for run in runs) / commands
    return row


def _out_of_time(started: float, rounds: int, round_s: float) -> bool:
    """Quick mode: another round would end past the budget, and the minimum is done."""
    spent = time.monotonic() - started
    return QUICK and rounds >= MIN_ROUNDS and spent + round_s > QUICK_BUDGET_S


def _run_rounds(
    servers: dict[str, Server], cache: redis.Redis, plan: CpuPlan, started: float
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    names = list(servers)
    state = _redis_state(cache)
    if WARMUP_S:
        for name in names:
            _measured(servers[name], state[1] if state else None, WARMUP_S, plan)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    discarded: list[str] = []
    attempt = 0
    round_s = 0.0
    while len(runs[names[0]]) < ROUNDS and not _out_of_time(started, len(runs[names[0]]), round_s):
        order = names if attempt % 2 == 0 else names[::-1]
        attempt += 1
        round_started = time.monotonic()
        results, problem = _round(servers, order, cache, plan)
        round_s = time.monotonic() - round_started
        if problem is None:
            for name, result in results.items():
                runs[name].append(result)
            continue
        discarded.append(problem)
        print(f"round discarded: {problem}")
        assert len(discarded) <= MAX_DISCARDED, f"too many rounds discarded: {discarded}"
        _recover(cache, servers)
    return runs, discarded


def test_redis_clients(stack_env: dict[str, str]) -> None:
    started = time.monotonic()  # the quick budget's start
    load_before = os.getloadavg()[0]  # how shared the machine was: context for noisy figures
    versions, unusable = _venv_packages()
    candidates = [
        candidate
        for candidate in CANDIDATES
        if candidate.client == "none" or candidate.client not in unusable
    ]
    skipped = {
        candidate.name: unusable[candidate.client]
        for candidate in CANDIDATES
        if candidate.client in unusable
    }
    redis_url = stack_env["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    cache = redis.Redis.from_url(redis_url)
    plan = cpu_plan()
    _seed(cache)
    try:
        with running_servers(candidates, redis_url, plan) as servers:
            runs, discarded = _run_rounds(servers, cache, plan, started)
            for server in servers.values():  # still answering right after the load
                assert _get(server.url, f"/products/{KEYS}") == (200, value_of(BODY_BYTES))
            about = {name: server.about for name, server in servers.items()}
    finally:
        with contextlib.suppress(redis.RedisError):
            cache.delete(*(_key(i) for i in range(1, KEYS + 1)))
        cache.close()

    rows = {}
    for candidate in candidates:
        rows[candidate.name] = {
            "label": candidate.label,
            "client": candidate.client,
            "pool": candidate.pool,
            "hiredis": candidate.hiredis,
            "coalesced": candidate.coalesced,
            "about": about[candidate.name],
            **_summary(runs[candidate.name], runs["floor"]),
        }
    data = {
        "tool": "wrk",
        "threads": 1,
        "connections": CONNECTIONS,
        "duration_s": DURATION_S,
        "warmup_s": WARMUP_S,
        "rounds": len(runs["floor"]),
        "pinned": plan.pinned,
        "body_bytes": BODY_BYTES,
        "keys": KEYS,
        "redis_db": REDIS_DB,
        "venv": str(VENV.relative_to(ROOT)),
        "requirements": list(REQUIREMENTS),
        "versions": versions,
        "not_measured": skipped,
        "discarded_rounds": discarded,
        "seconds": time.monotonic() - started,
        "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],  # 1-minute, at start and end
        "candidates": rows,
    }
    path = write_result("redis_clients", data)
    print(f"\n({path})")
    print("\n".join(section(data)))
