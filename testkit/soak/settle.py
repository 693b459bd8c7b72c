"""The soak's end: waiting until the system is idle, and reading what it holds (products,
storage, Redis, each API process, the dead letters), through the same tools an operator uses
(`python -m compressor.gc`, `python -m compressor.dlq`)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from catalogue import cache as product_cache
from catalogue import image_state
from catalogue.jobs import ImageJob, PoisonJob, decode_job
from catalogue.product_json import render_product
from db.products import COLUMNS
from testkit.loadgen import bearer
from testkit.soak.invariants import Letter, Served
from testkit.soak.processes import ROOT

PENDING = """(processing_status = 'pending'
               OR EXISTS (SELECT 1 FROM jsonb_array_elements(images) AS e
                           WHERE e ->> 'status' = 'pending'))"""


@dataclass
class Idle:
    """Nothing left to do: the outbox empty, no product pending, no cache debt unpaid (a
    product whose cached copy may be older than its row: catalogue/cache_repair.py), and the
    workers' group committed up to the end of every partition of the jobs topic, that end the
    same before and after the other checks."""

    postgres_url: str
    bootstrap_servers: str
    topic: str
    group_id: str
    # Only these products, and the outbox rows of `topic` (a database other tests share);
    # None: the whole database (the soak's own).
    product_ids: Sequence[int] | None = None
    last: dict[str, Any] = field(default_factory=dict)

    async def _lag(
        self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer
    ) -> tuple[dict[int, int], int]:
        (description,) = await admin.describe_topics([self.topic])
        tps = [TopicPartition(self.topic, p["partition"]) for p in description["partitions"]]
        end = await consumer.end_offsets(tps) if tps else {}
        committed = await admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        lag = 0
        for tp in tps:
            done = committed.get(tp)
            lag += end[tp] - (done.offset if done is not None and done.offset >= 0 else 0)
        return {tp.partition: end[tp] for tp in tps}, lag

    async def _database(self, conn: asyncpg.Connection) -> tuple[int, int, int]:
        if self.product_ids is None:
            outbox = await conn.fetchval("SELECT count(*) FROM outbox")
            pending = await conn.fetchval(f"SELECT count(*) FROM products WHERE {PENDING}")
            debts = await conn.fetchval("SELECT count(*) FROM cache_debts")
            return outbox, pending, debts
        ids = sorted(self.product_ids)
        outbox = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", self.topic)
        pending = await conn.fetchval(
            f"SELECT count(*) FROM products WHERE id = ANY($1::bigint[]) AND {PENDING}", ids
        )
        debts = await conn.fetchval(
            "SELECT count(*) FROM cache_debts WHERE product_id = ANY($1::bigint[])", ids
        )
        return outbox, pending, debts

    async def wait(self, timeout_s: float) -> float:
        """Seconds it took; TimeoutError (with the last readings) at the deadline."""
        started = time.monotonic()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False
        )
        await admin.start()
        await consumer.start()
        conn = await asyncpg.connect(self.postgres_url)
        try:
            while True:
                end, lag = await self._lag(admin, consumer)
                outbox, pending, debts = await self._database(conn)
                end_after, lag_after = await self._lag(admin, consumer)
                self.last = {"lag": lag_after, "outbox": outbox, "pending": pending, "debts": debts}
                if (lag, lag_after, outbox, pending, debts) == (0,) * 5 and end == end_after:
                    return time.monotonic() - started
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"not idle within {timeout_s:g} s: {self.last}")
                await asyncio.sleep(0.5)  # the poll interval of a condition with a deadline
        finally:
            await conn.close()
            await consumer.stop()
            await admin.close()


async def tool(env: Mapping[str, str], module: str, *args: str) -> tuple[int, str, str]:
    """`python -m <module> <args>` with the soak's settings: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def dead_letters(env: Mapping[str, str]) -> tuple[list[Letter], int]:
    """The image jobs on the dead-letter topic (`python -m compressor.dlq list --json`), and
    how many letters there are in all (clean-ups and poison messages included)."""
    code, out, err = await tool(env, "compressor.dlq", "list", "--json")
    if code != 0:
        raise RuntimeError(f"compressor.dlq list failed: {err[-2000:]}")
    letters, total = [], 0
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        total += 1
        letter = orjson.loads(line)
        try:
            job = decode_job(letter["value"].encode())
        except PoisonJob:
            continue
        if isinstance(job, ImageJob):
            letters.append(
                Letter(job.product_id, job.revision, job.image_urls, letter.get("error_class", ""))
            )
    return letters, total


async def product_rows(postgres_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            f"SELECT {COLUMNS}, processing_status::text AS processing_status, product_images "
            "FROM products ORDER BY id"
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


def rendered(rows: Sequence[Mapping[str, Any]]) -> dict[int, bytes]:
    """Each product as the database renders it: what every reader must serve."""
    return {int(row["id"]): render_product(row) for row in rows}


def stored_keys(storage: Path) -> set[str]:
    """Every object in local storage by its key (leftover temporary files included)."""
    root = storage / "products"
    if not root.exists():
        return set()
    return {p.relative_to(storage).as_posix() for p in root.rglob("*") if p.is_file()}


def referenced_keys(rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every output's keys: each entry's own and its renditions' (catalogue.image_state)."""
    return {key for row in rows for key in image_state.referenced_keys(orjson.loads(row["images"]))}


async def redis_served(redis_url: str, ids: Sequence[int]) -> Served:
    client = redis.Redis.from_url(redis_url)
    try:
        values = await client.mget([product_cache.product_key(i) for i in ids]) if ids else []
    finally:
        await client.aclose()
    bodies: dict[int, bytes | None] = {}
    for product_id, value in zip(ids, values, strict=True):
        body = (
            None
            if value is None
            else product_cache.unframe(value if isinstance(value, bytes) else value.encode())
        )
        bodies[product_id] = body or None  # a tombstone or a cached 404: not served
    return Served("redis", bodies)


async def api_served(name: str, url: str, admin_key: str, ids: Sequence[int]) -> Served:
    """GET /products/{id} of every id from one API process (with the admin key, which reads
    every user's products)."""
    bodies: dict[int, bytes | None] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def read(product_id: int) -> None:
            async with session.get(
                f"{url}/products/{product_id}", headers=bearer(admin_key)
            ) as response:
                body = await response.read()
                if response.status == 200:
                    bodies[product_id] = body
                elif response.status == 404:
                    bodies[product_id] = None
                else:
                    bodies[product_id] = b"HTTP %d: %s" % (response.status, body[:100])

        semaphore = asyncio.Semaphore(8)

        async def bounded(product_id: int) -> None:
            async with semaphore:
                await read(product_id)

        await asyncio.gather(*(bounded(i) for i in ids))
    return Served(name, bodies)


def env_without_proxy(env: Mapping[str, str]) -> dict[str, str]:
    # Loopback only: no proxy variable of the caller's may route the soak's traffic elsewhere.
    return {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy")}


def uploads_logged(logs: Sequence[Path]) -> int:
    """`image.uploaded` lines in the workers' logs: every upload, redone ones included."""
    count = 0
    for path in logs:
        if os.path.exists(path):
            with path.open("rb") as lines:
                count += sum(1 for line in lines if b'"image.uploaded"' in line)
    return count
