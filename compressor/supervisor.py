"""The worker supervisor, its composition root: builds every resource the worker owns, runs the
consumer until SIGTERM/SIGINT, and closes the resources in reverse order however it ends.

Who does what:
- compressor.consumer: the consume loop, backpressure, offsets, commits and rebalances;
- compressor.handling: one message, decoded and run, dead-lettered if it cannot finish;
- compressor.pipeline: one job, download → compress (the pool) → upload, retried per image;
- compressor.results: the job's write of the product's entries and its fresh cached copy;
- compressor.cleanup, compressor.claims: deleting stored objects nothing references (clean-up
  jobs, a superseded job's uploads), never one a job of this process is about to reference;
- compressor.dead_letters: the dead-letter topic, and marking the job's entries failed;
- compressor.gc_periodic: the storage garbage collection every STORAGE_GC_INTERVAL_SECONDS;
- compressor.endpoints: /metrics and /healthz.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from catalogue import cache as product_cache
from catalogue import spans
from catalogue.cache_repair import CacheRepairs, PostgresLedger
from catalogue.retry import RetryPolicy, retry
from catalogue.topics import ensure_job_topics
from compressor.claims import KeyClaims
from compressor.cleanup import ObjectCleanup
from compressor.consumer import JobConsumer
from compressor.dead_letters import DeadLetters
from compressor.download import Downloader, create_session
from compressor.endpoints import WorkerEndpoints
from compressor.gc_periodic import PeriodicGc
from compressor.handling import JobHandler
from compressor.metrics import WorkerMetrics
from compressor.pipeline import Pipeline, job_retry_policy
from compressor.pool import CompressionPool, RenderPool
from compressor.results import ProductResults
from compressor.storage import Storage, create_storage
from config import Settings
from db.pool import create_pool

log = logging.getLogger("compressor")
# Kafka may start after the worker (a fresh stack): its topics are awaited, not required.
TOPICS_RETRY = RetryPolicy(base_s=0.4, cap_s=5.0)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    processes: int
    download_concurrency: int
    upload_concurrency: int
    max_inflight_jobs: int
    group_id: str
    metrics_host: str
    metrics_port: int
    shutdown_timeout_s: float


def compression_pool(settings: Settings, processes: int, metrics: WorkerMetrics) -> RenderPool:
    return CompressionPool(
        processes,
        settings.image_max_pixels,
        timeout_s=settings.image_compress_timeout_seconds,
        on_rebuild=metrics.pool_rebuilds.inc,
    )


async def ensure_topics_until_kafka_answers(settings: Settings) -> None:
    await retry(
        lambda: ensure_job_topics(settings),
        TOPICS_RETRY,
        what="worker.ensure_topics",
        retry_on=(KafkaError, OSError),
    )


class Supervisor:
    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.metrics = WorkerMetrics()
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        await ensure_topics_until_kafka_answers(self.settings)
        async with AsyncExitStack() as resources:
            resources.callback(spans.configure(self.settings, "catalogue-worker"))
            pipeline, results = await self._pipeline(resources)
            consumer = await self._consumer(resources, pipeline, results)
            log.info(
                "worker.started",
                extra={"processes": self.options.processes, "group_id": self.options.group_id},
            )
            await consumer.run()
        log.info("worker.stopped")
        return 0

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker.stopping")
            self.stopping.set()

    async def _pipeline(self, resources: AsyncExitStack) -> tuple[Pipeline, ProductResults]:
        """The pool (warmed up), PostgreSQL, Redis, the download session and the storage."""
        settings, options = self.settings, self.options
        enter = resources.enter_async_context
        pool = await enter(compression_pool(settings, options.processes, self.metrics))
        db = await enter(await create_pool(settings, min_size=1))
        redis = await enter(product_cache.connect(settings.redis_url))
        session = await enter(create_session(settings, connections=options.download_concurrency))
        storage = await enter(create_storage(settings, threads=options.upload_concurrency))
        cleanup = await self._cleanup(resources, db, storage)
        cache = product_cache.ProductCache(
            redis,
            ttl_s=settings.cache_ttl_seconds,
            negative_ttl_s=settings.cache_negative_ttl_seconds,
        )

        ledger = PostgresLedger(db, acquire_timeout_s=settings.db_acquire_timeout_seconds)
        repairs = await enter(CacheRepairs(cache, ledger))
        results = ProductResults(
            db,
            cache,
            retry_policy=job_retry_policy(settings),
            cache_ttl_s=settings.cache_ttl_seconds,
            jobs_topic=settings.kafka_jobs_topic,
            events_topic=settings.kafka_events_topic,
            settle=repairs.settle,
        )
        pipeline = Pipeline(
            settings=settings,
            downloader=Downloader(session, settings),
            pool=pool,
            storage=storage,
            results=results,
            cleanup=cleanup,
            metrics=self.metrics,
            download_concurrency=options.download_concurrency,
            upload_concurrency=options.upload_concurrency,
        )
        return pipeline, results

    async def _cleanup(
        self, resources: AsyncExitStack, db: asyncpg.Pool, storage: Storage
    ) -> ObjectCleanup:
        """Deleting what nothing references: clean-up jobs, discarded uploads, and the periodic
        garbage collection (running from here until the stack closes)."""
        settings = self.settings
        claims = KeyClaims()
        await resources.enter_async_context(
            PeriodicGc(
                settings.postgres_url,
                storage,
                claims,
                self.metrics,
                interval_s=settings.storage_gc_interval_seconds,
                grace_s=settings.storage_gc_grace_seconds,
            )
        )
        return ObjectCleanup(
            db, storage, claims, self.metrics, retry_policy=job_retry_policy(settings)
        )

    async def _consumer(
        self, resources: AsyncExitStack, pipeline: Pipeline, results: ProductResults
    ) -> JobConsumer:
        """The producer of dead letters, the consumer (closed first: it leaves the group) and
        the HTTP endpoints."""
        settings, options = self.settings, self.options
        servers = settings.kafka_bootstrap_servers
        producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True)
        await resources.enter_async_context(producer)
        dead_letters = DeadLetters(
            producer,
            results,
            self.metrics,
            topic=settings.kafka_dlq_topic,
            group_id=options.group_id,
        )
        kafka = AIOKafkaConsumer(
            bootstrap_servers=servers,
            group_id=options.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=256 * 1024,  # jobs are small; fetch few at a time
        )
        consumer = JobConsumer(
            kafka,
            JobHandler(pipeline, pipeline.cleanup, dead_letters),
            self.stopping,
            max_inflight_jobs=options.max_inflight_jobs,
            shutdown_timeout_s=options.shutdown_timeout_s,
        )
        kafka.subscribe([settings.kafka_jobs_topic], listener=consumer.rebalance_listener)
        await resources.enter_async_context(kafka)
        endpoints = WorkerEndpoints(
            self.metrics,
            pipeline.stages,
            consumer,
            host=options.metrics_host,
            port=options.metrics_port,
        )
        await resources.enter_async_context(endpoints)
        return consumer
