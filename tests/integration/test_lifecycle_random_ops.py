"""A few hundred random creates, changes, reprocesses and deletes, through two API processes and
one real worker: once the system is idle, storage holds exactly the objects the database
references.

The operations come from a seeded `random.Random` (the seed is printed; LIFECYCLE_SEED replays
one, LIFECYCLE_OPERATIONS changes how many) and run a few at a time, so they overlap each other
and the worker's jobs: results that land on a newer state, clean-ups of keys another job is
uploading again, sources shared by several entries (the same bytes behind two URLs), products
gone with their user. Every answer must be one the API may give to that operation at that point.

Idle is a condition, polled to a deadline: nothing pending in any product, the outbox empty,
and the worker's group committed up to the end of every partition of the jobs topic (a job is
committed only once it has finished, the DeleteObjects clean-ups the worker's own results queue
included), with the topic's end the same before and after the other checks. Then the storage gc
runs with a grace of 0, and storage and the database's references must match in both
directions (and each API process must serve what the database holds).

A seed replays the same operations, not the same interleaving: the answers and the worker's
timing still vary from run to run.

Two bugs the random operations found (both fixed) are reproduced deterministically by the tests
at the end of this file:
- DELETE /users racing POST /products for that user answered 500 (a foreign key violation);
- an object whose clean-up ran while the job that uploaded it was finishing (results written,
  cache refresh not over) was left in storage until the gc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from catalogue import image_state
from server.app import create_app
from testkit.imagegen import sample_images
from testkit.workers import WorkerProcess, run_command

from .conftest import wait_for

pytestmark = pytest.mark.integration

OPERATIONS = int(os.environ.get("LIFECYCLE_OPERATIONS", "300"))
MAX_AT_ONCE = 6  # operations gathered together
HOT = 6  # the newest products, which half the operations on a product pick from
IDLE_TIMEOUT_S = 75.0

# -- the sample images, served on loopback ----------------------------------------------------


@dataclass
class SampleServer:
    """Serves the sample images on 127.0.0.1 after a short random delay (longer under /slow/),
    so that jobs stay in flight while the operations change their products; any query string
    names the same bytes under another URL. Anything else is a 404 (a permanent failure)."""

    images: dict[str, tuple[bytes, str]]
    hits: Counter[str] = field(default_factory=Counter)
    origin: str = ""
    _delays: random.Random = field(default_factory=lambda: random.Random(0))
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        slow = request.match_info["speed"] == "slow"
        await asyncio.sleep(
            self._delays.uniform(0.15, 0.3) if slow else self._delays.uniform(0, 0.02)
        )
        found = self.images.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="not found")
        body, content_type = found
        return web.Response(body=body, content_type=content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{speed:img|slow}/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def sources(self) -> list[str]:
        """The URLs operations pick from: each image under a few URLs (same bytes, so entries
        of one product share an object), a slow one, and one that is missing."""
        urls = [
            f"{self.origin}/img/{name}{query}"
            for name in self.images
            for query in ("", "?v=1", "?v=2")
        ]
        urls += [f"{self.origin}/slow/{name}" for name in list(self.images)[:2]]
        return [*urls, f"{self.origin}/img/missing.jpg"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def samples() -> AsyncIterator[SampleServer]:
    server = SampleServer(sample_images())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings(base_settings, tmp_path, samples):
    """Own topics, consumer group and storage: no job of another test reaches this worker, and
    storage holds only what this test made. The worker fetches from the sample server only; its
    periodic gc is off (the test runs the gc itself, once idle)."""
    suffix = uuid.uuid4().hex[:8]
    return base_settings.replace(
        kafka_jobs_topic=f"random-ops-{suffix}",
        kafka_dlq_topic=f"random-ops-{suffix}.dlq",
        worker_group_id=f"random-ops-{suffix}",
        image_storage_url=str(tmp_path / "images"),
        image_allowed_source_origins=samples.origin,
        image_rendition_sizes=(80, 160),
        image_retry_base_seconds=0.05,
        image_max_attempts=2,
        storage_gc_interval_seconds=0.0,
    )


@pytest.fixture
async def second_api(settings) -> AsyncIterator[TestClient]:
    """Another API process's worth of app: its own memory tier and relay, the same database,
    Redis and Kafka."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
def worker(settings):
    process = WorkerProcess(settings, "--processes", "1")
    yield process
    process.stop()


# -- the worker's log, the gc, storage --------------------------------------------------------


def events(worker: WorkerProcess) -> list[dict[str, Any]]:
    lines = (line for line in worker.log().splitlines() if line.startswith("{"))
    return [json.loads(line) for line in lines]


def run_gc(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command(settings, "compressor.gc", *args)


def stored_keys(settings) -> set[str]:
    """Every object in local storage, by its key (temporary upload files included: none may be
    left once idle)."""
    root = settings.local_storage_path
    return {p.relative_to(root).as_posix() for p in (root / "products").rglob("*") if p.is_file()}


async def referenced_keys(db, product_ids: set[int]) -> tuple[set[str], int]:
    """The keys the database references for this test's products, and how many entries."""
    rows = await db.fetch(
        "SELECT images::text AS images FROM products WHERE id = ANY($1::bigint[])",
        sorted(product_ids),
    )
    entries = [e for row in rows for e in orjson.loads(row["images"])]
    return image_state.referenced_keys(entries), len(entries)


# -- idle ------------------------------------------------------------------------------------


class Idleness:
    """Whether nothing is left to do: see the module."""

    def __init__(self, settings, db, worker: WorkerProcess, product_ids: set[int]) -> None:
        # This test's topic, outbox rows and products only: a session's other tests may leave
        # theirs (a quiet app's outbox, a product nobody processes).
        self.settings = settings
        self.db = db
        self.worker = worker
        self.product_ids = product_ids
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
        )
        self.last: dict[str, Any] = {}

    async def __aenter__(self) -> Idleness:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def kafka(self) -> tuple[dict[int, int], int]:
        """The jobs topic's end offsets per partition, and the worker group's lag behind them."""
        topic = self.settings.kafka_jobs_topic
        (description,) = await self.admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
        end = await self.consumer.end_offsets(tps) if tps else {}
        committed = await self.admin.list_consumer_group_offsets(
            self.settings.worker_group_id, partitions=tps
        )
        lag = 0
        for tp in tps:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            lag += end[tp] - position
        return {tp.partition: end[tp] for tp in tps}, lag

    async def check(self) -> bool:
        assert self.worker.process.poll() is None, (
            "the worker exited:\n" + self.worker.log()[-4000:]
        )
        end, lag = await self.kafka()
        outbox = await self.db.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = $1", self.settings.kafka_jobs_topic
        )
        pending = await self.db.fetchval(
            """SELECT count(*) FROM products
                WHERE id = ANY($1::bigint[])
                  AND (processing_status = 'pending'
                       OR EXISTS (SELECT 1 FROM jsonb_array_elements(images) AS e
                                   WHERE e ->> 'status' = 'pending'))""",
            sorted(self.product_ids),
        )
        end_after, lag_after = await self.kafka()
        self.last = {
            "end_offsets": end_after,
            "lag": lag_after,
            "outbox": outbox,
            "pending_products": pending,
        }
        return lag == 0 and outbox == 0 and pending == 0 and lag_after == 0 and end == end_after

    async def wait(self, timeout_s: float) -> float:
        started = time.monotonic()
        while not await self.check():
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"not idle within {timeout_s} s: {self.last}")
            await asyncio.sleep(0.2)
        return time.monotonic() - started


# -- the operations ---------------------------------------------------------------------------


@dataclass
class World:
    """What the database holds of this test's users and products (read back after every batch
    of operations)."""

    users: set[int] = field(default_factory=set)
    products: dict[int, tuple[int, list[str]]] = field(default_factory=dict)  # → user, sources
    ever_users: set[int] = field(default_factory=set)
    ever_products: set[int] = field(default_factory=set)

    async def refresh(self, db) -> None:
        users = await db.fetch(
            "SELECT id FROM users WHERE id = ANY($1::bigint[])", sorted(self.ever_users)
        )
        self.users = {r["id"] for r in users}
        rows = await db.fetch(
            "SELECT id, user_id, images::text AS images FROM products WHERE id = ANY($1::bigint[])",
            sorted(self.ever_products),
        )
        self.products = {
            r["id"]: (r["user_id"], [e["source"] for e in orjson.loads(r["images"])]) for r in rows
        }


@dataclass
class Op:
    kind: str
    client: int  # which API process: 0 or 1
    target: int | None = None  # a product id, or for create/delete_user a user id
    body: dict[str, Any] | None = None
    if_match: bool = False
    merge_patch: bool = False


class Run:
    def __init__(self, seed: int, clients: list[TestClient], sources: list[str], db) -> None:
        self.rng = random.Random(seed)
        self.clients = clients
        self.sources = sources
        self.db = db
        self.world = World()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.per_client: Counter[int] = Counter()
        self.log: list[str] = []  # every operation and its answer, for a failure's report
        self.history: list[tuple[float, Op, int, bytes]] = []  # (time, op, status, created)

    def story_of(self, product_id: int, worker: WorkerProcess) -> list[str]:
        """What happened to one product: the operations on it and the worker's events, in
        time order (for the report of an object left behind)."""
        lines: list[tuple[float, str]] = []
        for at, op, status, created in self.history:
            made = op.kind == "create" and status == 201
            if (op.target == product_id and op.kind != "create") or (
                made and orjson.loads(created)["product_id"] == str(product_id)
            ):
                lines.append((at, f"api{op.client} {op.kind} {op.body or ''} → {status}"))
            elif op.kind == "delete_user" and status == 204:
                lines.append((at, f"api{op.client} delete_user {op.target} → 204"))
        for event in events(worker):
            if event.get("product_id") == product_id:
                detail = {k: v for k, v in event.items() if k not in ("level", "ts", "product_id")}
                stamp = datetime.fromisoformat(event["ts"]).timestamp()
                lines.append((stamp, f"worker {detail}"))
        return [f"{at:.3f} {line}" for at, line in sorted(lines)]

    # Picking.

    def some_sources(self, most: int = 3) -> list[str]:
        count = self.rng.randint(0, most)
        picked = [self.rng.choice(self.sources) for _ in range(count)]
        return list(dict.fromkeys(picked)) if self.rng.random() < 0.8 else picked

    def changed_sources(self, current: list[str]) -> list[str]:
        choice = self.rng.random()
        sources = list(current)
        if choice < 0.25 or not sources:
            return self.some_sources()
        if choice < 0.5:  # one added
            sources.insert(self.rng.randint(0, len(sources)), self.rng.choice(self.sources))
            return sources[:3]
        if choice < 0.75:  # one removed
            sources.pop(self.rng.randrange(len(sources)))
            return sources
        self.rng.shuffle(sources)  # a reorder (maybe nothing to process)
        return sources

    def a_product(self) -> int | None:
        """Mostly a live product, often one of the newest (its jobs are likely in flight, and
        operations of one batch meet on it), sometimes one that is gone."""
        live, ever = sorted(self.world.products), sorted(self.world.ever_products)
        gone = sorted(set(ever) - set(live))
        if gone and (not live or self.rng.random() < 0.06):
            return self.rng.choice(gone)
        if not live:
            return None
        return self.rng.choice(live[-HOT:] if self.rng.random() < 0.5 else live)

    def a_user(self) -> int:
        live = sorted(self.world.users)
        gone = sorted(self.world.ever_users - self.world.users)
        if gone and self.rng.random() < 0.05:
            return self.rng.choice(gone)
        return self.rng.choice(live)

    def plan(self) -> Op:
        client = self.rng.randrange(2)
        if not self.world.users:
            return Op("create_user", client)
        roll = self.rng.random()
        product = self.a_product()
        if roll < 0.34 or product is None:
            body = {
                "user_id": str(self.a_user()),
                "product_name": f"Lamp {self.rng.randrange(1000)}",
                "product_price": round(self.rng.uniform(0, 500), 2),
                "product_images": self.some_sources(),
            }
            return Op("create", client, int(body["user_id"]), body)
        if roll < 0.64:
            current = self.world.products.get(product, (0, []))[1]
            body: dict[str, Any] = {}
            if self.rng.random() < 0.7:
                images = self.changed_sources(current)
                body["product_images"] = images if images or self.rng.random() < 0.5 else None
            if self.rng.random() < 0.4 or not body:
                body["product_name"] = f"Renamed {self.rng.randrange(1000)}"
            if self.rng.random() < 0.3:
                body["product_price"] = self.rng.randrange(1, 10_000) / 100
            return Op(
                "patch",
                client,
                product,
                body,
                if_match=self.rng.random() < 0.15,
                merge_patch=self.rng.random() < 0.5,
            )
        if roll < 0.78:
            return Op("reprocess", client, product)
        if roll < 0.91:
            return Op("delete", client, product, if_match=self.rng.random() < 0.15)
        if roll < 0.975 or len(self.world.users) < 2:
            return Op("create_user", client)
        return Op("delete_user", client, self.a_user())

    # Expecting.

    def allowed(self, op: Op, batch: list[Op]) -> set[int]:
        """The answers a correct API may give to `op`, run together with `batch`."""
        world = self.world
        deleted_users = {o.target for o in batch if o.kind == "delete_user"}
        if op.kind == "create_user":
            return {201}
        if op.kind == "delete_user":
            if op.target not in world.users:
                return {404}
            twice = sum(1 for o in batch if o.kind == "delete_user" and o.target == op.target)
            return {204, 404} if twice > 1 else {204}
        if op.kind == "create":
            if op.target not in world.users:
                return {422}
            return {201, 422} if op.target in deleted_users else {201}
        # On a product: gone already, or maybe gone by the time this one runs.
        if op.target not in world.products:
            return {404}
        owner = world.products[op.target][0]
        others = [o for o in batch if o is not op]
        doomed = owner in deleted_users or any(
            o.kind == "delete" and o.target == op.target for o in others
        )
        ok = {"patch": 200, "reprocess": 202, "delete": 204}[op.kind]
        allowed = {ok, 404} if doomed else {ok}
        if op.if_match:
            allowed.add(412)  # any change since the GET, the worker's results included
        return allowed

    # Running.

    async def run_one(self, op: Op, allowed: set[int]) -> None:
        client = self.clients[op.client]
        self.per_client[op.client] += 1
        headers: dict[str, str] = {}
        status, body = await self.send(client, op, headers)
        self.statuses[(op.kind, status)] += 1
        self.log.append(f"{op.kind} client={op.client} target={op.target} {op.body} → {status}")
        self.history.append((time.time(), op, status, body if op.kind == "create" else b""))
        assert status in allowed, (
            f"{op} answered {status} {body!r}, expected one of {sorted(allowed)}; "
            f"last operations:\n" + "\n".join(self.log[-30:])
        )
        if op.kind == "create_user" or (op.kind == "create" and status == 201):
            kind, key = (
                ("users", "user_id") if op.kind == "create_user" else ("products", "product_id")
            )
            created = int(orjson.loads(body)[key])
            (self.world.ever_users if kind == "users" else self.world.ever_products).add(created)
        if op.kind == "patch" and status == 200:
            product = orjson.loads(body)
            if "product_images" in op.body:
                assert product["product_images"] == (op.body["product_images"] or [])
            if "product_name" in op.body:
                assert product["product_name"] == op.body["product_name"]
        if op.kind == "reprocess" and status == 202:
            assert orjson.loads(body)["product_id"] == str(op.target)

    async def send(self, client: TestClient, op: Op, headers: dict[str, str]) -> tuple[int, bytes]:
        if op.kind == "create_user":
            body = {"username": "random", "email": f"{uuid.uuid4().hex}@example.com"}
            response = await client.post("/users", json=body)
        elif op.kind == "delete_user":
            response = await client.delete(f"/users/{op.target}")
        elif op.kind == "create":
            response = await client.post("/products", json=op.body)
        else:
            path = f"/products/{op.target}"
            if op.if_match:
                got = await client.get(path)
                if got.status == 200:
                    headers["If-Match"] = got.headers["ETag"]
                else:
                    headers["If-Match"] = '"gone"'
            if op.kind == "reprocess":
                response = await client.post(f"{path}/reprocess")
            elif op.kind == "delete":
                response = await client.delete(path, headers=headers)
            else:
                content_type = (
                    "application/merge-patch+json" if op.merge_patch else "application/json"
                )
                response = await client.patch(
                    path,
                    data=orjson.dumps(op.body),
                    headers={**headers, "Content-Type": content_type},
                )
        async with response:
            return response.status, await response.read()

    async def batch(self) -> None:
        ops = [self.plan() for _ in range(self.rng.randint(1, MAX_AT_ONCE))]
        expected = [self.allowed(op, ops) for op in ops]
        await asyncio.gather(
            *(self.run_one(op, allowed) for op, allowed in zip(ops, expected, strict=True))
        )
        await self.world.refresh(self.db)

    async def start(self, users: int = 3) -> None:
        for n in range(users):
            op = Op("create_user", n % 2)
            await self.run_one(op, {201})
        await self.world.refresh(self.db)

    async def operations(self, count: int) -> int:
        done = 0
        while done < count:
            before = sum(self.statuses.values())
            await self.batch()
            done += sum(self.statuses.values()) - before
        return done


async def every_process_serves_the_database_state(
    db, clients: list[TestClient], world: World, stored: set[str]
) -> None:
    """Each API process, once its copies have caught up (a deadline), answers every live
    product as the database holds it, showing only stored objects, and every deleted one 404."""
    rows = await db.fetch(
        "SELECT id, images::text AS images FROM products WHERE id = ANY($1::bigint[])",
        sorted(world.ever_products),
    )
    expected = {}
    for row in rows:
        entries = orjson.loads(row["images"])
        shown = [e for e in entries if e["url"] is not None]
        assert {e["key"] for e in shown} <= stored, f"product {row['id']} shows a missing object"
        expected[row["id"]] = ([e["url"] for e in shown], image_state.processing_status(entries))
    gone = world.ever_products - set(expected)
    differing: list[str] = []

    async def all_agree() -> bool:
        differing.clear()
        for n, client in enumerate(clients):
            for product_id, (urls, status) in expected.items():
                async with client.get(f"/products/{product_id}") as response:
                    body = await response.json() if response.status == 200 else None
                served = body and (body["compressed_product_images"], body["processing_status"])
                if served != (urls, status):
                    differing.append(f"process {n} product {product_id}: {body}")
            for product_id in gone:
                async with client.get(f"/products/{product_id}") as response:
                    if response.status != 404:
                        differing.append(f"process {n} deleted {product_id}: {response.status}")
        return not differing

    try:
        await wait_for(all_agree, timeout_s=15)
    except AssertionError:
        raise AssertionError(
            "API processes disagree with the database:\n" + "\n".join(differing[:10])
        ) from None
    print(f"both processes serve {len(expected)} live and {len(gone)} deleted products as stored")


# -- the test ---------------------------------------------------------------------------------


async def test_after_random_operations_storage_holds_exactly_what_the_database_references(
    api, second_api, settings, db, samples, worker
):
    seed = int(os.environ.get("LIFECYCLE_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nLIFECYCLE_SEED={seed} ({OPERATIONS} operations)")
    started = time.monotonic()

    async def joined() -> bool:
        assert worker.process.poll() is None, worker.log()[-4000:]
        return any(e["event"] == "worker.assigned" for e in events(worker))

    await wait_for(joined, timeout_s=60)
    print(f"worker joined after {time.monotonic() - started:.1f} s")
    operating = time.monotonic()

    run = Run(seed, [api, second_api], samples.sources(), db)
    await run.start()
    done = await run.operations(OPERATIONS)
    ops_s = time.monotonic() - operating
    print(f"{done} operations in {ops_s:.1f} s; per API process {dict(run.per_client)}")
    print("answers:", dict(sorted(run.statuses.items())))
    assert all(run.per_client[n] > done // 4 for n in (0, 1))  # both processes served a share

    async with Idleness(settings, db, worker, run.world.ever_products) as idleness:
        waited = await idleness.wait(IDLE_TIMEOUT_S)
    print(f"idle after {waited:.1f} s more: {idleness.last}")

    logged = Counter(e["event"] for e in events(worker))
    print(
        "worker:",
        {k: logged[k] for k in ("job.done", "job.superseded", "objects.deleted", "image.uploaded")},
    )
    errors = [e for e in events(worker) if e["level"] in ("ERROR", "CRITICAL")]
    assert errors == [], errors[:5]
    expected_warnings = {"image.failed", "ssrf.sources_opened"}
    warnings = Counter(
        e["event"]
        for e in events(worker)
        if e["level"] == "WARNING" and e["event"] not in expected_warnings
    )
    print("worker warnings besides failed images:", dict(warnings))

    referenced, entries = await referenced_keys(db, run.world.ever_products)
    before_gc = stored_keys(settings)
    leaked, lost = before_gc - referenced, referenced - before_gc
    print(
        f"before gc: {len(before_gc)} objects stored, {len(referenced)} referenced by "
        f"{entries} entries of {len(run.world.products)} products; "
        f"{len(leaked)} unreferenced, {len(lost)} referenced but missing"
    )
    for key in sorted(leaked):  # told with its product's story, to find why
        product_id = int(key.split("/")[1])
        print(f"LEAKED before gc: {key} (worker log {worker.log_path})")
        print("\n".join(run.story_of(product_id, worker)))
    # The clean-ups alone leave nothing behind: the gc is for crashes, not for races.
    assert leaked == set(), f"seed {seed}: unreferenced objects left before gc: {leaked}"
    # A referenced object is never deleted, whatever the order things happened in.
    assert lost == set(), f"seed {seed}: referenced objects missing from storage: {sorted(lost)}"

    gc = await asyncio.to_thread(run_gc, settings, "--grace", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    report = json.loads(gc.stdout)
    print("gc:", report)
    assert report["failed"] == 0

    stored = stored_keys(settings)
    referenced_after, _ = await referenced_keys(db, run.world.ever_products)
    assert referenced_after == referenced  # still idle: nothing changed meanwhile
    print(f"after gc: {len(stored)} objects stored, {len(referenced_after)} referenced")
    assert stored == referenced_after, (
        f"seed {seed}: stored but unreferenced {sorted(stored - referenced_after)}; "
        f"referenced but missing {sorted(referenced_after - stored)}"
    )
    assert report["deleted"] == len(leaked)

    await every_process_serves_the_database_state(db, [api, second_api], run.world, stored)
    print(f"total {time.monotonic() - started:.1f} s")


# -- the races the random operations found, held open -------------------------------------------


async def waiting_on_a_lock(db, query_start: str) -> bool:
    return bool(
        await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND query LIKE $1""",
            query_start + "%",
        )
    )


async def test_a_user_deleted_while_a_product_is_created_for_them_is_not_a_500(api, db):
    """The race the random operations hit (e.g. LIFECYCLE_SEED=3), held open: the user's row
    is held (FOR NO KEY UPDATE, which a create's foreign key check does not wait for) while the
    deletion waits on it and a create for the user commits. A serial order ends with 204 for the
    deletion and the product gone with the user (create, then delete), or 422 for the create
    (delete, then create). The deletion used to delete the products first and the user then,
    so that a product created in between made it a 500 (a foreign key violation); it now locks
    the user's row first."""
    email = f"{uuid.uuid4().hex}@example.com"
    user = await (await api.post("/users", json={"username": "racer", "email": email})).json()
    user_id = int(user["user_id"])
    async with db.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        try:
            await holder.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id)
            deletion = asyncio.ensure_future(api.delete(f"/users/{user_id}"))
            await wait_for(lambda: waiting_on_a_lock(db, ""), timeout_s=10)
            created = await api.post(
                "/products",
                json={
                    "user_id": str(user_id),
                    "product_name": "Lamp",
                    "product_price": 1,
                    "product_images": [],
                },
            )
            assert created.status == 201  # the create does not wait for the held row
            product_id = int((await created.json())["product_id"])
        finally:
            await transaction.rollback()
    deleted = await deletion
    assert deleted.status == 204, await deleted.text()
    assert await db.fetchval("SELECT count(*) FROM products WHERE id = $1", product_id) == 0


class LeftBehind(AssertionError):
    """An object nothing references that the clean-ups left in storage (only the gc takes it)."""


@contextlib.asynccontextmanager
async def a_redis_that_never_answers() -> AsyncIterator[str]:
    """A loopback port that accepts connections and never replies: each cache write of the
    worker's times out (0.5 s) and is retried, so a job stays between its database write and the
    release of its uploads for a couple of seconds."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        server.close()


async def test_an_object_deleted_while_its_job_finishes_its_cache_write_is_not_left_behind(
    api, user, settings, db, samples
):
    """The leak the random operations hit (e.g. LIFECYCLE_SEED=3800034120, timing permitting;
    product 5 there: created, its job's result written, the product deleted, the clean-up
    received, then job.done), held open by a worker whose cache writes time out. The clean-up
    skips the key the job still holds; the job, releasing it last, deletes it then."""
    async with a_redis_that_never_answers() as redis_url:
        worker_settings = settings.replace(
            redis_url=redis_url, image_max_attempts=4, image_retry_base_seconds=0.05
        )
        worker = WorkerProcess(worker_settings, "--processes", "1")
        try:
            created = await api.post(
                "/products",
                json={
                    "user_id": user["user_id"],
                    "product_name": "Lamp",
                    "product_price": 1,
                    "product_images": [f"{samples.origin}/img/a.jpg"],
                },
            )
            assert created.status == 201
            product_id = int((await created.json())["product_id"])

            async def written() -> str | None:
                entries = await db.fetchval(
                    "SELECT images::text FROM products WHERE id = $1", product_id
                )
                keys = image_state.referenced_keys(orjson.loads(entries))
                return next(iter(keys), None)

            async def key_written() -> bool:
                return await written() is not None

            await wait_for(key_written, timeout_s=60)
            key = await written()
            assert (settings.local_storage_path / key).exists()

            def logged(name: str, kind: str | None = None) -> list[dict[str, Any]]:
                return [
                    e
                    for e in events(worker)
                    if e["event"] == name
                    and e.get("product_id") == product_id
                    and (kind is None or e.get("kind") == kind)
                ]

            assert logged("job.done") == []  # the job still holds its upload
            assert (await api.delete(f"/products/{product_id}")).status == 204

            async def clean_up_received() -> bool:
                return bool(logged("job.received", "delete_objects"))

            await wait_for(clean_up_received, timeout_s=30)
            assert logged("job.done") == [], "the clean-up came too late to show the race"

            async with Idleness(worker_settings, db, worker, {product_id}) as idleness:
                await idleness.wait(IDLE_TIMEOUT_S)
            assert logged("job.done")  # the job finished, its cache write given up
        finally:
            worker.stop()

    if (settings.local_storage_path / key).exists():
        raise LeftBehind(
            f"{key} is left in storage, referenced by nothing; worker log {worker.log_path}"
        )
