"""The worker's dead-letter step with a stand-in producer: it waits out a Kafka that is down,
gives up only on a dead letter Kafka will never take, and marks failed only the entries the job
left pending at its revision."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from catalogue import image_state
from catalogue.jobs import DeleteObjects, ImageJob
from catalogue.retry import RetryPolicy
from compressor.consumer import Message
from compressor.dead_letters import DeadLetters
from compressor.errors import JobExhausted, transient
from compressor.metrics import WorkerMetrics
from compressor.results import ProductResults
from tests.unit.test_pipeline_flow import FlakyCache
from tests.unit.test_pipeline_flow import Products as InMemoryProducts

RECORD = SimpleNamespace(
    value=b'{"v": 1, "product_id": "7", "product_images": ["https://x/a.jpg"]}',
    key=b"7",
    topic="jobs",
    partition=0,
    offset=41,
)
MESSAGE = cast(Message, RECORD)  # the five fields a dead letter reads
JOB = ImageJob(7, ("https://x/a.jpg",))


@dataclass
class Producer:
    errors: list[Exception]
    sent: list[bytes] = field(default_factory=list)

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(value)


@dataclass
class Products:
    failed: list[int] = field(default_factory=list)

    async def mark_failed(self, job: ImageJob, reason: str) -> None:
        self.failed.append(job.product_id)


def dead_letters_with(producer: Producer) -> DeadLetters:
    return DeadLetters(
        cast(AIOKafkaProducer, producer),  # send_and_wait only
        Products(),
        WorkerMetrics(),
        topic="jobs.dlq",
        group_id="group",
        retry_policy=RetryPolicy(base_s=0.0, cap_s=0.0),  # no waits
    )


def jobs_counted(dead_letters: DeadLetters, status: str) -> float:
    return dead_letters.metrics.jobs.labels(status)._value.get()


def failed(dead_letters: DeadLetters) -> list[int]:
    products = dead_letters.products
    assert isinstance(products, Products)
    return products.failed


async def test_a_dead_letter_waits_out_a_kafka_that_is_down():
    producer = Producer([KafkaTimeoutError(), KafkaTimeoutError()])
    dead_letters = dead_letters_with(producer)
    exhausted = JobExhausted(transient("http_status", "HTTP 503"), 4)

    await dead_letters.send(MESSAGE, exhausted, attempts=4, job=JOB)

    assert producer.sent == [RECORD.value]
    assert jobs_counted(dead_letters, "dead_lettered") == 1
    assert failed(dead_letters) == [7]


async def test_a_dead_letter_kafka_will_never_take_is_logged_not_retried_for_ever(caplog):
    producer = Producer([MessageSizeTooLargeError()])
    dead_letters = dead_letters_with(producer)
    exhausted = JobExhausted(transient("http_status", "HTTP 503"), 4)

    await dead_letters.send(MESSAGE, exhausted, attempts=4, job=JOB)

    assert producer.sent == []
    assert jobs_counted(dead_letters, "dead_letter_refused") == 1
    assert jobs_counted(dead_letters, "dead_lettered") == 0
    assert failed(dead_letters) == [7]
    refused = [r for r in caplog.records if r.getMessage() == "job.dead_letter_refused"]
    assert refused
    assert refused[0].payload == RECORD.value.decode()


async def test_a_dead_lettered_clean_up_marks_no_product():
    dead_letters = dead_letters_with(Producer([]))
    exhausted = JobExhausted(transient("OSError", "disk gone"), 4)

    await dead_letters.send(MESSAGE, exhausted, attempts=4, job=DeleteObjects(7, ("k",)))

    assert jobs_counted(dead_letters, "dead_lettered") == 1
    assert failed(dead_letters) == []


def results_over(products: InMemoryProducts, cache: FlakyCache) -> ProductResults:
    return ProductResults(
        cast(asyncpg.Pool, products),
        cache,
        retry_policy=RetryPolicy(base_s=0.0, cap_s=0.0, max_attempts=2),
        cache_ttl_s=60,
        jobs_topic="jobs",
        events_topic="events",
    )


async def test_a_dead_letter_fails_the_entries_its_job_left_pending_and_refreshes_the_cache():
    products, cache = InMemoryProducts(), FlakyCache(failures=0)
    products.add(7, JOB.image_urls)

    await results_over(products, cache).mark_failed(JOB, "HTTP 503 (after 4 attempts)")

    (entry,) = products.entries(7)
    assert entry["status"] == "failed"
    assert entry["error"] == "dead_lettered: HTTP 503 (after 4 attempts)"
    assert cache.version == products.rows[7]["version"] == 2


async def test_a_dead_letter_of_an_older_revision_leaves_the_newer_state_alone():
    products, cache = InMemoryProducts(), FlakyCache(failures=0)
    products.add(7, JOB.image_urls)
    reprocessed = image_state.reprocess(products.entries(7), 2).entries
    products.rows[7].update(images=reprocessed, images_revision=2)

    await results_over(products, cache).mark_failed(JOB, "HTTP 503")  # JOB: revision 1

    assert products.entries(7)[0]["status"] == "pending"
    assert products.rows[7]["version"] == 1
    assert cache.calls == 0


@dataclass
class DownProducts(Products):
    """A PostgreSQL that refuses the first `outage` markings."""

    outage: int = 3
    tries: int = 0

    async def mark_failed(self, job: ImageJob, reason: str) -> None:
        self.tries += 1
        if self.tries <= self.outage:
            raise ConnectionRefusedError(111, "Connection refused")
        await super().mark_failed(job, reason)


async def test_a_dead_letter_waits_out_a_postgresql_that_is_down_to_mark_its_entries_failed():
    """Found by the soak: a job dead-lettered because PostgreSQL was down could not mark its
    entries either, and they stayed pending for good once PostgreSQL was back."""
    products = DownProducts()
    dead_letters = DeadLetters(
        cast(AIOKafkaProducer, Producer([])),
        products,
        WorkerMetrics(),
        topic="jobs.dlq",
        group_id="group",
        retry_policy=RetryPolicy(base_s=0.0, cap_s=0.0),
    )
    exhausted = JobExhausted(transient("ConnectionRefusedError", "refused"), 4)

    await dead_letters.send(MESSAGE, exhausted, attempts=4, job=JOB)

    assert products.tries == 4
    assert products.failed == [7]
