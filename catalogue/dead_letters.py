"""Dead letters: what a failed job carries to the dead-letter topic, reading them back and
replaying them. Shared by the workers' CLI (`python -m compressor.dlq`) and the API's operator
console (server/console/), which may not import compressor.

Headers follow what mature Kafka libraries record (Spring Kafka's recoverer, Karafka): the error
class and message, the attempt count, the source topic/partition/offset, the consumer group and
the time, next to the original key and payload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from catalogue import cache as product_cache
from catalogue import image_state
from catalogue.jobs import ImageJob, PoisonJob, decode_job
from catalogue.product_json import render_product
from db import products

PREFIX = "dlq."


def dead_letter_headers(
    *,
    error_class: str,
    error_message: str,
    attempts: int,
    topic: str,
    partition: int,
    offset: int,
    group: str,
    product_id: int | None,
) -> list[tuple[str, bytes]]:
    fields = {
        "error_class": error_class,
        "error_message": error_message[:2000],
        "attempts": str(attempts),
        "source_topic": topic,
        "source_partition": str(partition),
        "source_offset": str(offset),
        "consumer_group": group,
        "failed_at_ms": str(int(time.time() * 1000)),
        "product_id": "" if product_id is None else str(product_id),
    }
    return [(PREFIX + k, v.encode()) for k, v in fields.items()]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def product_id(self) -> str:
        return self.headers.get("product_id") or (self.key or b"").decode(errors="replace")

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": (self.key or b"").decode(errors="replace"),
            "value": (self.value or b"").decode(errors="replace"),
            **self.headers,
        }


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    # A consumer without a subscription keeps no partition metadata: ask the cluster.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"] != 0:
        return []
    return sorted(TopicPartition(topic, p["partition"]) for p in description["partitions"])


async def read_all(
    bootstrap_servers: str, topic: str, *, limit: int | None = None
) -> list[DeadLetter]:
    """Every dead letter currently on the topic, oldest first per partition (no group, no commit)."""
    tps = await topic_partitions(bootstrap_servers, topic)
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        for tp in tps:
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
        while remaining and (limit is None or len(letters) < limit):
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    headers = {
                        k.removeprefix(PREFIX): v.decode(errors="replace") for k, v in m.headers
                    }
                    letters.append(DeadLetter(m.partition, m.offset, m.key, m.value, headers))
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return letters[:limit] if limit is not None else letters
    finally:
        await consumer.stop()


@dataclass(slots=True)
class Replayed:
    published: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


async def reopen(
    conn: asyncpg.Connection, cache: product_cache.ProductCache, job: ImageJob
) -> bool:
    """Puts the entries a dead-lettered image job failed back to pending (at its revision, in
    one transaction) and the row into the cache; whether the job has entries to land on now
    (False: the product changed or went since, and replaying it would do nothing)."""
    async with conn.transaction():
        locked = await products.lock_images(conn, job.product_id)
        if locked is None:
            return False
        entries = orjson.loads(locked["images"])
        reopened = image_state.reopen_failed(entries, job.revision)
        row = None
        if reopened is not None:
            entries = reopened
            row = await products.save_images(
                conn,
                job.product_id,
                reopened,
                status=image_state.processing_status(reopened),
                revision=locked["images_revision"],
            )
    if row is not None:
        await cache.put_fresh(job.product_id, row["version"], render_product(row))
    # Reopened now, or by an earlier replay whose publish never happened: pending either way.
    return bool(image_state.awaiting(entries, job.revision))


async def replay(
    bootstrap_servers: str,
    dlq_topic: str,
    jobs_topic: str,
    *,
    product_id: str | None,
    postgres_url: str,
    redis_url: str,
    cache_ttl_s: int = 3600,
) -> Replayed:
    """Puts dead letters (all, or one product's) back on the jobs topic with their original key
    and payload, after reopening the entries their image jobs failed (the worker skips a job
    with no entry pending at its revision). A letter whose product changed since (reprocessed,
    its images changed, deleted) is skipped: its job has nothing left to land on; so is a
    poison message and a second letter of the same job. Clean-up jobs go back as they are.
    Replaying twice is harmless: the worker is idempotent."""
    letters = [
        letter
        for letter in await read_all(bootstrap_servers, dlq_topic)
        if product_id is None or letter.product_id == product_id
    ]
    result, chosen, seen = Replayed(), list[DeadLetter](), set[bytes | None]()
    conn = await asyncpg.connect(postgres_url)
    cache = product_cache.ProductCache(
        product_cache.connect(redis_url), ttl_s=cache_ttl_s, negative_ttl_s=5
    )
    try:
        for letter in letters:
            try:
                job = decode_job(letter.value)
            except PoisonJob:
                result.skip("poison")
                continue
            if letter.value in seen:
                result.skip("duplicate")
            elif isinstance(job, ImageJob) and not await reopen(conn, cache, job):
                result.skip("changed_since")
            else:
                chosen.append(letter)
            seen.add(letter.value)
    finally:
        await conn.close()
        await cache.client.aclose()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for letter in chosen:
            await producer.send_and_wait(jobs_topic, letter.value, key=letter.key)
            result.published += 1
    finally:
        await producer.stop()
    return result
