"""kcat (Debian's, on librdkafka: a Kafka client we did not write) talks to the worker through its
topics only. It produces what no API would publish straight into the jobs topic, a malformed job
and a job for a product that does not exist, and reads the dead letters back with their headers.
The worker dead-letters the first, skips the second and goes on processing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from testkit.debian_tools import debian_tool, run_tool
from tests.integration import test_worker as worker_tests
from tests.integration.conftest import wait_for
from tests.integration.test_worker import create_product, finished_product
from tests.integration.test_worker_lifecycle import events, logged

# The worker tests' fixtures: topics, consumer group and storage of the test's own, the
# loopback image server, workers stopped at the end.
settings = worker_tests.settings
images = worker_tests.images
worker_factory = worker_tests.worker_factory

pytestmark = pytest.mark.integration

# Cut off in the middle of a job: not JSON at all.
MALFORMED = b'{"v": 2, "kind": "images", "product_id": "7", "product_images": ["http://'
MALFORMED_KEY = "kcat-malformed"
# Below 2^63-1, so a well-formed id; no test makes that many products.
MISSING_PRODUCT_ID = 9_000_000_000_000_000_001


@pytest.fixture(scope="module")
def kcat() -> str:
    return debian_tool("kcat", "kcat")


def produce(
    kcat: str,
    brokers: str,
    topic: str,
    payload: bytes,
    key: str,
    tmp: Path,
    partition: int | None = None,
) -> None:
    """One message, its payload read whole from a file (no delimiter splits it). `partition`
    sends it there; otherwise the key picks the partition with murmur2, as Java's and aiokafka's
    producers do (librdkafka's default, CRC32, would place a product's job elsewhere)."""
    path = tmp / f"message-{time.monotonic_ns()}"
    path.write_bytes(payload)
    where = [] if partition is None else ["-p", str(partition)]
    run_tool(
        [
            *(kcat, "-P", "-b", brokers, "-t", topic, "-k", key, *where, "-m", "10", "-q"),
            *("-X", "partitioner=murmur2_random", str(path)),
        ]
    )


def read_all(kcat: str, brokers: str, topic: str) -> list[dict]:
    """Every message on the topic, as kcat's JSON envelopes (topic, partition, offset, key,
    payload, headers), read from the beginning to the current end of each partition."""
    result = run_tool(
        [kcat, "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-J", "-q", "-m", "10"]
    )
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]


def headers_of(envelope: dict) -> dict[str, str]:
    """kcat lists headers as one flat array: name, value, name, value, …"""
    flat = envelope.get("headers") or []
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def committed_offsets(settings) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.worker_group_id)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if isinstance(tp, TopicPartition) and tp.topic == settings.kafka_jobs_topic
    }


async def test_kcat_poison_job_is_dead_lettered_a_missing_product_skipped_and_work_goes_on(
    api, user, images, worker_factory, settings, kcat, tmp_path
):
    brokers = settings.kafka_bootstrap_servers
    jobs, dlq = settings.kafka_jobs_topic, settings.kafka_dlq_topic
    worker = worker_factory()
    await logged(worker, "worker.assigned")  # the topics exist and the worker is in its group
    produced_from_ms = int(time.time() * 1000)

    # A malformed job on every partition: none of them may stay blocked behind it.
    for partition in range(settings.kafka_topic_partitions):
        await asyncio.to_thread(
            produce, kcat, brokers, jobs, MALFORMED, MALFORMED_KEY, tmp_path, partition=partition
        )
    # A well-formed job, as the contract in catalogue/jobs.py spells it, for no product at all.
    missing_source = images.url("/photo.jpg?missing-product")
    missing_job = {
        "v": 2,
        "kind": "images",
        "product_id": str(MISSING_PRODUCT_ID),
        "revision": 1,
        "product_images": [missing_source],
    }
    await asyncio.to_thread(
        produce,
        kcat,
        brokers,
        jobs,
        json.dumps(missing_job).encode(),
        str(MISSING_PRODUCT_ID),
        tmp_path,
    )

    # Where kcat's messages landed, as kcat reads them back from the jobs topic.
    on_jobs = await asyncio.to_thread(read_all, kcat, brokers, jobs)
    malformed_at = {
        (m["partition"], m["offset"]) for m in on_jobs if m["payload"] == MALFORMED.decode()
    }
    partitions = list(range(settings.kafka_topic_partitions))
    assert {p for p, _ in malformed_at} == set(partitions)
    # The keyed job went where the API's own producer (aiokafka) puts that product's jobs.
    key = str(MISSING_PRODUCT_ID)
    expected = DefaultPartitioner()(key.encode(), partitions, partitions)
    assert [m["partition"] for m in on_jobs if m["key"] == key] == [expected]

    async def all_dead_lettered() -> list[dict] | None:
        letters = await asyncio.to_thread(read_all, kcat, brokers, dlq)
        return letters if len(letters) >= len(malformed_at) else None

    letters = await wait_for(all_dead_lettered, timeout_s=60, interval_s=0.5)
    assert len(letters) == len(malformed_at), letters  # the missing product's job is not there
    seen_at = set()
    for letter in letters:
        # The original key and payload, byte for byte, with the error and where it came from.
        assert letter["key"] == MALFORMED_KEY
        assert letter["payload"] == MALFORMED.decode()
        headers = headers_of(letter)
        assert headers["dlq.error_class"] == "PoisonJob"
        assert headers["dlq.error_message"].startswith("payload is not JSON")
        assert headers["dlq.attempts"] == "1"
        assert headers["dlq.source_topic"] == jobs
        assert headers["dlq.consumer_group"] == settings.worker_group_id
        assert headers["dlq.product_id"] == ""
        assert produced_from_ms <= int(headers["dlq.failed_at_ms"]) <= time.time() * 1000
        seen_at.add((int(headers["dlq.source_partition"]), int(headers["dlq.source_offset"])))
    assert seen_at == malformed_at

    # The job for no product is skipped: nothing downloaded, nothing dead-lettered, no row.
    skipped = await logged(worker, "job.skipped", timeout_s=60)
    assert skipped["product_id"] == MISSING_PRODUCT_ID
    assert skipped["reason"] == "missing"
    assert images.hits["/photo.jpg"] == 0
    assert (await api.get(f"/products/{MISSING_PRODUCT_ID}")).status == 404

    # And it keeps processing: a product created now is done, and the group's commits reach
    # the end of every partition, past each message kcat wrote.
    product_id = await create_product(api, user, [images.url("/photo.jpg")])
    product = await finished_product(api, product_id)
    assert product["processing_status"] == "done", product["processing_errors"]
    assert len(product["compressed_product_images"]) == 1
    end = {}
    for message in await asyncio.to_thread(read_all, kcat, brokers, jobs):
        end[message["partition"]] = max(end.get(message["partition"], 0), message["offset"] + 1)

    async def committed_to_the_end() -> bool:
        committed = await committed_offsets(settings)
        return all(committed.get(p, -1) >= offset for p, offset in end.items())

    await wait_for(committed_to_the_end, timeout_s=30, interval_s=0.2)
    assert worker.process.poll() is None
    assert len(events(worker, "job.poison")) == settings.kafka_topic_partitions
