"""`scripts/soak [--duration 10m] [--seed N] [--report PATH]`: the chaos soak, from start to
report (see testkit/soak/__init__.py for the parts).

1. A database of its own on the stack `scripts/stack env` names (SOAK_POSTGRES_DB, default
   catalogue_soak, emptied first), a Redis database of its own (SOAK_REDIS_DB, 13), topics, a
   consumer group and a storage folder of its own run, so it never meets a developer's data.
2. Two API processes, two worker supervisors in one group, the flaky image sources, the
   clients; the faults and the sources' outages on their seeded schedules, for `--duration`.
3. The load stops, every fault is undone, the sources heal; once idle: the dead letters are
   checked and replayed, the gc runs with zero grace, and the end state is checked against what
   the clients were answered. The report is printed (and written with --report); the exit
   status is 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as redis

from db.migrate import migrate
from testkit.loadgen import parse_duration
from testkit.soak import invariants, report, settle
from testkit.soak.faults import Injector
from testkit.soak.load import Api, Client, Record, run_clients
from testkit.soak.processes import ROOT, ApiProcess, WorkerProcess, stack
from testkit.soak.schedule import SourceMode, plan_faults, plan_sources
from testkit.soak.sources import FlakySources

log = logging.getLogger("soak")

PROCESSES = 2  # API processes, and worker supervisors
PARTITIONS = 6
IDLE_TIMEOUT_S = 300.0
SERVED_TIMEOUT_S = 15.0  # readers catch up with the database (invalidations in flight)
WORKER_DRAIN_S = 15.0
# A request waiting on PostgreSQL answers 503 up to the pool's acquire and statement deadlines
# after it is back; and a restarted PostgreSQL needs its first connections re-established.
POSTGRES_SLACK_S = 10.0


@dataclass(frozen=True)
class Options:
    duration_s: float
    seed: int
    report_path: Path | None
    rate_per_s: float
    users: int
    folder: Path


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=parse_duration, default=600.0, help="10m, 2m, 90s")
    parser.add_argument("--seed", type=int, default=None, help="replays a run's schedule")
    parser.add_argument("--report", type=Path, default=None, help="also write the report here")
    parser.add_argument("--rate", type=float, default=20.0, help="operations a second, all told")
    parser.add_argument("--users", type=int, default=6, help="clients, each its own user")
    parser.add_argument("--folder", type=Path, default=None, help="logs (default .stack/soak/…)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    folder = args.folder or ROOT / ".stack" / "soak" / f"{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    return Options(args.duration, seed, args.report, args.rate, args.users, folder)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def prepare_database(admin_url: str, url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')  # a name from the operator's env
    finally:
        await conn.close()
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "TRUNCATE outbox, idempotency_keys, cache_debts, products, users RESTART IDENTITY CASCADE"
        )
    finally:
        await conn.close()


def system_env(base: dict[str, str], run: str, folder: Path, api_port: int) -> dict[str, str]:
    """The settings every process of the soak runs with."""
    return {
        **settings_env_base(base),
        "KAFKA_JOBS_TOPIC": f"soak-{run}",
        "KAFKA_DLQ_TOPIC": f"soak-{run}.dlq",
        "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        "WORKER_GROUP_ID": f"soak-{run}",
        "IMAGE_STORAGE_URL": str(folder / "images"),
        "IMAGE_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}/images",
        # The load must meet the system, not the limiter.
        "RATE_LIMIT_READS": "100000/s",
        "RATE_LIMIT_WRITES": "100000/s",
        "IMAGE_QUOTA_PER_HOUR": "100000000",
        "AUTH_MODE": "api_key",
        "ADMIN_API_KEYS": secrets.token_urlsafe(32),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "OUTBOX_POLL_INTERVAL_SECONDS": "0.5",
        "IMAGE_RENDITION_SIZES": "160,320",
        "IMAGE_RETRY_BASE_SECONDS": "0.5",
        "IMAGE_MAX_ATTEMPTS": "4",
        "IMAGE_DOWNLOAD_TIMEOUT_SECONDS": "5",
        "WORKER_PROCESSES": "1",
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS": str(WORKER_DRAIN_S),
        "STORAGE_GC_INTERVAL_SECONDS": "0",  # the soak runs the gc itself, once idle
        "DB_POOL_MAX_SIZE": "16",
    }


def settings_env_base(base: dict[str, str]) -> dict[str, str]:
    env = settle.env_without_proxy(base)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class System:
    env: dict[str, str]
    sources: FlakySources
    apis: list[ApiProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def processes(self) -> list[ApiProcess | WorkerProcess]:
        return [*self.apis, *self.workers]

    async def start(self, folder: Path, api_ports: list[int]) -> None:
        for n, port in enumerate(api_ports):
            self.apis.append(ApiProcess(n, port, self.env, folder))
        for n in range(PROCESSES):
            self.workers.append(WorkerProcess(n, self.env, folder))
        for process in self.processes:
            await process.start()
        await asyncio.gather(*(p.wait_ready() for p in self.processes))

    async def watch(self, stop: asyncio.Event) -> None:
        """Starts again a process that died on its own, so the soak goes on (its death is a
        violation all the same)."""
        while not stop.is_set():
            for process in self.processes:
                with contextlib.suppress(Exception):
                    await process.restart_if_dead()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def stop(self) -> None:
        await asyncio.gather(
            *(p.terminate(WORKER_DRAIN_S + 15) for p in self.processes), return_exceptions=True
        )


async def play_sources(
    sources: FlakySources, seed: int, duration_s: float, clock: Record, stop: asyncio.Event
) -> None:
    for phase in plan_sources(seed, duration_s):
        delay = phase.at_s - clock.now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            break
        await sources.set_mode(phase.mode)
    await sources.set_mode(SourceMode.OK)


async def soak(options: Options, interrupted: asyncio.Event) -> dict[str, Any]:
    base = dict(os.environ)
    admin_url = base["POSTGRES_URL"]
    db_name = base.get("SOAK_POSTGRES_DB", "catalogue_soak")
    postgres_url = with_database(admin_url, db_name)
    redis_url = base["REDIS_URL"].rsplit("/", 1)[0] + "/" + base.get("SOAK_REDIS_DB", "13")
    options.folder.mkdir(parents=True, exist_ok=True)
    run = f"{options.seed}-{secrets.token_hex(3)}"
    say(f"seed {options.seed}; logs in {options.folder}")

    await prepare_database(admin_url, postgres_url, db_name)
    cache = redis.Redis.from_url(redis_url)
    await cache.flushdb()
    await cache.aclose()

    sources = FlakySources(seed=options.seed)
    await sources.start()
    api_ports = [free_port() for _ in range(PROCESSES)]
    env = {
        **system_env(base, run, options.folder, api_ports[0]),
        "POSTGRES_URL": postgres_url,
        "REDIS_URL": redis_url,
        "IMAGE_ALLOWED_SOURCE_ORIGINS": sources.origin,
    }
    system = System(env, sources)
    record = Record()
    stop = asyncio.Event()
    injector = Injector(system.apis, system.workers, record.now, WORKER_DRAIN_S)
    violations: list[str] = []
    extra: dict[str, Any] = {"logs": str(options.folder)}
    counts: Counter[str] = Counter()
    try:
        await system.start(options.folder, api_ports)
        say(f"{PROCESSES} API processes and {PROCESSES} workers up; signing up {options.users}")
        faults = plan_faults(options.seed, options.duration_s, processes=PROCESSES)
        extra["faults_planned"] = len(faults)
        connector = aiohttp.TCPConnector(limit=64)
        timeout = aiohttp.ClientTimeout(total=5.0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            api = Api(session, [a.url for a in system.apis], record)
            clients = [
                Client(n, api, record, sources.urls(), random.Random(f"{options.seed}-client-{n}"))
                for n in range(options.users)
            ]
            for client in clients:
                await client.sign_up()
            # The schedules count from here; the sign-ups are set-up, not load.
            record.started = time.monotonic()
            record.attempts.clear()
            say(f"load and faults for {options.duration_s:g} s ({len(faults)} faults planned)")
            tasks = [
                asyncio.create_task(injector.play(faults, stop)),
                asyncio.create_task(
                    play_sources(sources, options.seed, options.duration_s, record, stop)
                ),
                asyncio.create_task(system.watch(stop)),
            ]
            load = asyncio.create_task(
                run_clients(
                    clients,
                    rate_per_s=options.rate_per_s,
                    duration_s=options.duration_s,
                    stop=interrupted,
                )
            )
            await load
            stop.set()
            await asyncio.gather(*tasks)
        extra["load_s"] = round(record.now(), 1)
        if interrupted.is_set():
            raise KeyboardInterrupt
        await settle_and_check(
            options,
            system,
            injector,
            record,
            env,
            postgres_url,
            redis_url,
            violations,
            counts,
            extra,
        )
    finally:
        injector.thaw_all()
        await system.stop()
        await sources.stop()
    windows = [
        {
            "kind": str(w.fault.kind),
            "target": w.fault.target,
            "index": w.fault.index,
            "hold_s": w.fault.hold_s,
            "start_s": round(w.start_s, 2),
            "end_s": round(w.end_s, 2),
            **({"error": w.error} if w.error else {}),
        }
        for w in injector.windows
    ]
    violations += [
        f"fault {w['kind']} at {w['start_s']} s failed: {w['error']}"
        for w in windows
        if "error" in w
    ]
    return report.build_report(
        seed=options.seed,
        duration_s=options.duration_s,
        windows=windows,
        attempts=record.attempts,
        counts=counts,
        violations=violations,
        extra=extra,
    )


async def settle_and_check(
    options: Options,
    system: System,
    injector: Injector,
    record: Record,
    env: dict[str, str],
    postgres_url: str,
    redis_url: str,
    violations: list[str],
    counts: Counter[str],
    extra: dict[str, Any],
) -> None:
    def add(verdict: invariants.Verdict) -> None:
        violations.extend(verdict.violations)
        counts.update(verdict.counts)

    say("load over; every service up, every process running, then waiting for idle")
    await stack("up")
    for process in system.processes:
        await process.restart_if_dead()
    await asyncio.gather(*(p.wait_ready() for p in system.processes))
    idle = settle.Idle(
        postgres_url,
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["KAFKA_JOBS_TOPIC"],
        env["WORKER_GROUP_ID"],
    )
    try:
        extra["idle_after_s"] = round(await idle.wait(IDLE_TIMEOUT_S), 1)
    except TimeoutError as exc:
        violations.append(str(exc))

    letters, total = await settle.dead_letters(env)
    extra["dead_letters"] = total
    rows = await settle.product_rows(postgres_url)
    add(invariants.check_dead_letters(letters, {int(r["id"]): r for r in rows}))
    if letters:
        code, _, err = await settle.tool(env, "compressor.dlq", "replay", "--all")
        extra["replay"] = err.strip().splitlines()[-1:] if err else []
        if code != 0:
            violations.append(f"compressor.dlq replay failed: {err[-1000:]}")
        try:
            await idle.wait(IDLE_TIMEOUT_S)
        except TimeoutError as exc:
            violations.append(f"after the replay: {exc}")
        rows = await settle.product_rows(postgres_url)
        add(invariants.check_replayed(letters, {int(r["id"]): r for r in rows}))
    extra["replayed"] = counts.get("replayed_ready", 0)

    storage = Path(env["IMAGE_STORAGE_URL"])
    extra["unreferenced_before_gc"] = len(
        settle.stored_keys(storage) - settle.referenced_keys(rows)
    )
    code, out, err = await settle.tool(env, "compressor.gc", "--grace", "0", "--json")
    if code != 0:
        violations.append(f"compressor.gc failed ({code}): {err[-1000:]}")
    else:
        extra["gc_deleted"] = orjson.loads(out)["deleted"]
    rows = await settle.product_rows(postgres_url)
    add(invariants.check_storage(settle.stored_keys(storage), settle.referenced_keys(rows)))
    add(invariants.check_creations(record.creations, record.expected, rows))
    add(invariants.check_states(record.expected, rows))
    add(invariants.check_terminal(rows))
    violations.extend(record.unexpected)
    counts["stale_reads_during_load"] = len(record.stale_reads)
    violations.extend(f"stale read: {line}" for line in record.stale_reads)

    database = settle.rendered(rows)
    gone = sorted(set(record.expected) - set(database))
    ids = sorted(database) + gone
    admin_key = env["ADMIN_API_KEYS"]
    deadline = time.monotonic() + SERVED_TIMEOUT_S
    while True:
        readers = [await settle.redis_served(redis_url, ids)] + [
            await settle.api_served(a.name, a.url, admin_key, ids) for a in system.apis
        ]
        served = invariants.check_served(database, gone, readers)
        if not served.violations or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)  # invalidations in flight: polled to a deadline
    add(served)

    add(
        invariants.check_server_errors(record.answers(), injector.postgres_down(), POSTGRES_SLACK_S)
    )
    add(
        invariants.check_processes(
            {p.name: p.alive for p in system.processes},
            [line for p in system.processes for line in p.died],
        )
    )
    extra["products"] = len(rows)
    extra["images_processed"] = sum(
        1 for r in rows for e in orjson.loads(r["images"]) if e["status"] == "ready"
    )
    extra["uploads"] = settle.uploads_logged([w.log_path for w in system.workers])
    extra["processes_started"] = {p.name: p.starts for p in system.processes}


def say(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    for name in ("POSTGRES_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        if name not in os.environ:
            say(f"{name} is not set: run through scripts/soak, which reads `scripts/stack env`")
            return 2
    logging.basicConfig(level=logging.INFO, format="soak: %(message)s", stream=sys.stderr)

    async def run() -> dict[str, Any]:
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted.set)
        return await soak(options, interrupted)

    try:
        result = asyncio.run(run())
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    print(report.render(result), flush=True)
    if options.report_path is not None:
        options.report_path.parent.mkdir(parents=True, exist_ok=True)
        options.report_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0 if result["passed"] else 1
