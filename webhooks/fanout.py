"""Product events from Kafka become deliveries: one per enabled endpoint of the event's user
subscribed to its type, queued in PostgreSQL before the offsets are committed (at least once;
an event read twice queues nothing new, by its id)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError

from catalogue import tracing
from catalogue.events import PoisonEvent, decode_event
from catalogue.retry import Backoff, RetryPolicy
from db import webhooks
from db.pool import DATABASE_ERRORS

log = logging.getLogger("webhooks")

BATCH_MAX = 500
POLL_TIMEOUT_MS = 500
DB_RETRY = RetryPolicy(base_s=0.2, cap_s=5.0)


class EventFanout:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        db: asyncpg.Pool,
        wake: asyncio.Event,
        stopping: asyncio.Event,
    ) -> None:
        self.consumer = consumer
        self.db = db
        self.wake = wake
        self.stopping = stopping

    async def run(self) -> None:
        while not self.stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=BATCH_MAX)
            messages = [m for partition in batches.values() for m in partition]
            if not messages:
                continue
            if not await self._queue_until_stored(messages):
                return  # stopping: the offsets stay uncommitted, the next owner reads them again
            try:
                await self.consumer.commit()
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: their new owner reads the batch again, and
                # queues nothing twice.
                log.warning("webhook.commit_failed", extra={"error": repr(exc)})
            self.wake.set()

    async def _queue_until_stored(self, messages: list[ConsumerRecord[bytes, bytes]]) -> bool:
        backoff = Backoff(DB_RETRY)
        while not self.stopping.is_set():
            try:
                await self._queue(messages)
                return True
            except DATABASE_ERRORS as exc:
                log.warning("webhook.queue_failed", extra={"error": repr(exc)})
                await asyncio.sleep(backoff.next_delay_s())
        return False

    async def _queue(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        queued = 0
        async with self.db.acquire() as conn, conn.transaction():
            for message in messages:
                try:
                    event = decode_event(message.value)
                except PoisonEvent as exc:
                    log.error(
                        "webhook.event_skipped",
                        extra={
                            "partition": message.partition,
                            "offset": message.offset,
                            "error": str(exc),
                        },
                    )
                    continue
                queued += await webhooks.queue_deliveries(
                    conn,
                    user_id=event.user_id,
                    event_id=event.id,
                    event_type=event.type,
                    body=event.webhook_body(),
                    traceparent=tracing.from_kafka_headers(message.headers),
                )
        if queued:
            log.info("webhook.deliveries_queued", extra={"deliveries": queued})
