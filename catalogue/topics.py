"""The Kafka topics jobs and events travel on, created the same way by whichever side starts
first."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from config import Settings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


async def ensure_job_topics(settings: Settings) -> list[str]:
    """The jobs topic, its dead-letter topic and the events topic, with the configured partitions
    and replication: the API's relay and the workers both call this, so neither depends on the
    other starting."""
    return await ensure_topics(
        settings.kafka_bootstrap_servers,
        [settings.kafka_jobs_topic, settings.kafka_dlq_topic, settings.kafka_events_topic],
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_replication_factor,
    )


async def ensure_topics(
    bootstrap_servers: str, topics: list[str], *, partitions: int, replication_factor: int
) -> list[str]:
    """Creates the topics that do not exist yet; returns those it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(t, partitions, replication_factor) for t in missing]
        )
        for topic, code, *_ in response.topic_errors:
            # Another process may have created it between our list and create: that is fine.
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"creating topic {topic} failed with error code {code}")
        log.info("kafka.topics_created", extra={"topics": missing, "partitions": partitions})
        return missing
    finally:
        await admin.close()
