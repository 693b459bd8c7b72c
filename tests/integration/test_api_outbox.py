"""The transactional outbox against the real stack: a product's image job reaches Kafka through
the API's relay, also when Kafka was down at the time of the POST."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from .conftest import stack, wait_for

pytestmark = pytest.mark.integration

IMAGES = [
    "https://images.example.com/front.jpg",
    "https://images.example.com/back.jpg",
    "http://images.example.com/side.png",
]


async def post_product(api, user_id: str, images: list[str]) -> str:
    response = await api.post(
        "/products",
        json={
            "user_id": user_id,
            "product_name": "Teapot",
            "product_images": images,
            "product_price": 12.5,
        },
    )
    assert response.status == 201, await response.text()
    return (await response.json())["product_id"]


async def outbox_rows(db, product_id: str) -> list:
    return await db.fetch(
        "SELECT topic, payload::text AS payload FROM outbox WHERE key = $1", product_id
    )


async def wait_until_published(db, product_id: str, timeout_s: float) -> None:
    async def gone() -> bool:
        return not await outbox_rows(db, product_id)

    await wait_for(gone, timeout_s=timeout_s, interval_s=0.1)


async def jobs_on_topic(settings, product_id: str, timeout_s: float = 60) -> list:
    """The records keyed `product_id` on the jobs topic, read from the beginning."""
    topic = settings.kafka_jobs_topic
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found = []
    try:

        async def topic_known() -> bool:
            # A consumer subscribed to a topic its first metadata lacks (just created, or a
            # broker still loading after a restart) would wait minutes for the next refresh.
            return topic in await consumer.topics()

        await wait_for(topic_known, timeout_s=timeout_s, interval_s=0.2)
        consumer.subscribe([topic])

        async def arrived() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            found.extend(
                record
                for records in batches.values()
                for record in records
                if record.key == product_id.encode()
            )
            return bool(found)

        await wait_for(arrived, timeout_s=timeout_s)
    finally:
        await consumer.stop()
    return found


def assert_is_the_job(record, product_id: str, images: list[str]) -> None:
    assert record.key == product_id.encode()
    assert orjson.loads(record.value) == {
        "v": 2,
        "kind": "images",
        "product_id": product_id,
        "revision": 1,
        "product_images": images,
    }


async def test_a_new_products_job_is_committed_with_it_published_and_deleted(
    api, user, db, settings
):
    product_id = await post_product(api, user["user_id"], IMAGES)
    # Published by the relay (woken by NOTIFY), then deleted from the outbox.
    await wait_until_published(db, product_id, timeout_s=30)

    records = await jobs_on_topic(settings, product_id)
    assert len(records) == 1
    assert_is_the_job(records[0], product_id, IMAGES)
    assert records[0].topic == settings.kafka_jobs_topic


async def published_total(api) -> float:
    """outbox_published_total as /metrics shows it."""
    response = await api.get("/metrics")
    assert response.status == 200
    text = await response.text()
    match = re.search(r"^outbox_published_total (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


async def test_the_jobs_the_relay_publishes_are_counted_in_the_metrics(api, user, db):
    before = await published_total(api)
    product_id = await post_product(api, user["user_id"], IMAGES)
    await wait_until_published(db, product_id, timeout_s=30)

    async def counted() -> bool:
        # The relay counts after its commit, so the row may be gone a moment before.
        return await published_total(api) >= before + 1

    await wait_for(counted, timeout_s=10)


async def test_a_product_without_images_queues_no_job(api, user, db, settings):
    product_id = await post_product(api, user["user_id"], [])
    jobs = [
        r for r in await outbox_rows(db, product_id) if r["topic"] != settings.kafka_events_topic
    ]
    assert jobs == []


async def test_a_job_posted_while_kafka_is_down_is_published_when_it_returns(
    api, user, db, settings, caplog
):
    caplog.set_level(logging.WARNING, logger="server.relay")
    await asyncio.to_thread(stack, "down", "kafka")
    try:
        started = time.monotonic()
        product_id = await post_product(api, user["user_id"], IMAGES)
        assert time.monotonic() - started < 5

        rows = await outbox_rows(db, product_id)
        topics = sorted(r["topic"] for r in rows)
        assert topics == sorted([settings.kafka_jobs_topic, settings.kafka_events_topic])
        (job,) = [r for r in rows if r["topic"] == settings.kafka_jobs_topic]
        assert orjson.loads(job["payload"]) == {
            "v": 2,
            "kind": "images",
            "product_id": product_id,
            "revision": 1,
            "product_images": IMAGES,
        }

        async def relay_failed() -> bool:
            return any(r.getMessage() == "relay.publish_failed" for r in caplog.records)

        # The relay tried, failed, and kept the job.
        await wait_for(relay_failed, timeout_s=45)
        assert len(await outbox_rows(db, product_id)) == 2

        readiness = await api.get("/readyz")
        assert readiness.status == 503
        assert "kafka" in (await readiness.json())["message"]
        # The API keeps serving meanwhile.
        assert (await api.get(f"/products/{product_id}")).status == 200
    finally:
        await asyncio.to_thread(stack, "up", "kafka")

    await wait_until_published(db, product_id, timeout_s=90)
    records = await jobs_on_topic(settings, product_id)
    assert len(records) >= 1  # at least once; the worker tolerates a duplicate
    for record in records:
        assert_is_the_job(record, product_id, IMAGES)
