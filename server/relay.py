"""The outbox relay: publishes committed image jobs to Kafka, then deletes them.

A product and its job are written in one transaction, so no job is lost when Kafka is down at
POST time: the row waits in `outbox` until the relay can publish it. The relay is woken by
LISTEN/NOTIFY (jobs reach Kafka within milliseconds), polls as a fallback, and claims rows with
FOR UPDATE SKIP LOCKED so the relays of several API processes can share the table. A row is
deleted only after Kafka acknowledged it (idempotent producer, acks=all); a crash in between
publishes it again, which the idempotent worker tolerates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from prometheus_client import Counter

from catalogue import spans
from catalogue.retry import Backoff, RetryPolicy
from catalogue.topics import ensure_job_topics
from catalogue.tracing import kafka_headers
from config import Settings
from config.logging import current_traceparent
from db import outbox

log = logging.getLogger(__name__)

BATCH_SIZE = 500
PUBLISH_TIMEOUT_S = 5.0
# One batch: claim, publish (up to PUBLISH_TIMEOUT_S per send), delete, commit.
BATCH_TIMEOUT_S = PUBLISH_TIMEOUT_S * 2
# After a failed drain (Kafka or PostgreSQL away): 0.1 s, doubling up to 5 s, jittered.
PUBLISH_RETRY = RetryPolicy(base_s=0.1, cap_s=5.0)


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, published: Counter) -> None:
        """`published` counts the jobs Kafka acknowledged (the API's outbox_published_total)."""
        self.pool = pool
        self.settings = settings
        self.published = published
        self.producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None

    # -- Kafka producer: (re)created lazily, so the API starts and serves while Kafka is down ----

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            settings = self.settings
            await ensure_job_topics(settings)
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                enable_idempotence=True,  # implies acks=all
                linger_ms=2,
                request_timeout_ms=int(PUBLISH_TIMEOUT_S * 1000),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
            log.info("relay.producer_started")
        return self.producer

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            # stop() flushes; with Kafka gone that could wait forever.
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(producer.stop(), 2.0)

    # -- LISTEN/NOTIFY on a connection of its own (pooled connections are never left listening) --

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        listener: asyncpg.Connection | None = None
        try:
            listener = await asyncpg.connect(self.settings.postgres_url, timeout=2)
            await listener.add_listener("outbox", lambda *_: self._wake.set())
        except Exception as exc:  # any failure: polling still drains the outbox meanwhile
            log.warning("relay.listen_failed", extra={"error": repr(exc)})
            if listener is not None:
                listener.terminate()
            return
        self._listener = listener

    # -- draining --------------------------------------------------------------------------------

    async def publish_batch(self) -> int:
        """Publishes and deletes up to BATCH_SIZE rows; returns how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await outbox.claim_batch(conn, BATCH_SIZE)
            if not rows:
                return 0
            producer = await self._producer()
            started = time.perf_counter()
            sends = [await self._send(producer, r) for r in rows]
            await asyncio.gather(*sends)
            await outbox.delete(conn, [r["id"] for r in rows])
        self.published.inc(len(rows))
        log.info(
            "outbox.published",
            extra={"jobs": len(rows), "ms": round((time.perf_counter() - started) * 1000, 2)},
        )
        return len(rows)

    @staticmethod
    async def _send(producer: Any, row: asyncpg.Record) -> asyncio.Future[Any]:
        """Queues one row with the producer; a row of a trace is a step of it (a span with an
        exporter), and its header names that step, so the consumer's work is its child."""
        if row["traceparent"] is None:
            return await producer.send(
                row["topic"], row["payload"].encode(), key=row["key"].encode()
            )
        topic = row["topic"]
        with spans.step("outbox.publish", row["traceparent"], "producer", topic=topic):
            return await producer.send(
                topic,
                row["payload"].encode(),
                key=row["key"].encode(),
                headers=kafka_headers(current_traceparent.get()),
            )

    async def drain(self) -> int:
        total = 0
        while not self._stopping and (
            count := await asyncio.wait_for(self.publish_batch(), BATCH_TIMEOUT_S)
        ):
            total += count
        return total

    async def run(self) -> None:
        publish_backoff = Backoff(PUBLISH_RETRY)
        while not self._stopping:
            self._wake.clear()
            await self._ensure_listener()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry_in_s = publish_backoff.next_delay_s()
                log.warning(
                    "relay.publish_failed",
                    extra={"error": repr(exc), "retry_in_s": round(retry_in_s, 3)},
                )
                await self._drop_producer()
                # Not woken by NOTIFY here: with Kafka down, every POST would cause a retry.
                await asyncio.sleep(retry_in_s)
                continue
            publish_backoff.reset()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), self.settings.outbox_poll_interval_seconds
                )

    def request_stop(self) -> None:
        """Makes run() return after the batch in progress (cancelling aiokafka mid-connect
        leaks its socket, and mid-publish publishes the batch twice)."""
        self._stopping = True
        self._wake.set()

    async def close(self) -> None:
        await self._drop_producer()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.close(), 2.0)

    async def kafka_ready(self) -> bool:
        """Whether Kafka answers; before the relay has had a job to publish (so no producer yet),
        a short-lived client asks."""
        probe = None
        try:
            if self.producer is not None:
                await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 1.0)
            else:
                probe = AIOKafkaClient(
                    bootstrap_servers=self.settings.kafka_bootstrap_servers,
                    request_timeout_ms=1000,
                )
                await asyncio.wait_for(probe.bootstrap(), 1.0)
        except Exception:
            return False
        finally:
            if probe is not None:
                with contextlib.suppress(Exception):
                    await probe.close()
        return True
