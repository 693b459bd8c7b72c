"""The worker supervisor: consumes image jobs from Kafka and runs them through the pipeline.

At-least-once and idempotent: offsets are committed explicitly, only up to the lowest job still
in flight in each partition (jobs finish out of order). The consumer keeps polling while jobs
run or wait for a retry, pausing its partitions when --max-inflight-jobs is reached, so it never
falls out of its group. Jobs that cannot finish go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from catalogue import cache as product_cache
from catalogue.jobs import ImageJob, PoisonJob, decode_job
from catalogue.topics import ensure_job_topics
from compressor.dlq import dead_letter_headers
from compressor.download import Downloader, create_session
from compressor.errors import backoff_s
from compressor.metrics import WorkerMetrics
from compressor.offsets import OffsetTracker
from compressor.pipeline import JobExhausted, Pipeline
from compressor.pool import CompressionPool
from compressor.storage import create_storage
from config import Settings
from db.pool import create_pool

log = logging.getLogger("compressor")
# Dead letters Kafka will never accept, however long the worker waits. (aiokafka's `retriable`
# flag cannot tell: a broker that is down shows as KafkaTimeoutError, also not "retriable".)
_DEAD_LETTER_REFUSED = (MessageSizeTooLargeError, TopicAuthorizationFailedError)

POLL_TIMEOUT_MS = 100


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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.supervisor.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.supervisor.joined = True
        log.info("worker.assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})


class Supervisor:
    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.metrics = WorkerMetrics()
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.tasks: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
        self.stopping = asyncio.Event()
        self.joined = False
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.pipeline: Pipeline
        self.pool: CompressionPool

    # -- life cycle --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        async with AsyncExitStack() as stack:
            await self._start(stack)
            log.info(
                "worker.started",
                extra={"processes": self.options.processes, "group_id": self.options.group_id},
            )
            await self._consume()
            await self._drain()
        log.info("worker.stopped")
        return 0

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker.stopping")
            self.stopping.set()

    async def _start(self, stack: AsyncExitStack) -> None:
        settings, options = self.settings, self.options
        await self._ensure_topics()
        # Resources close in reverse order: consumer first (leaves the group), pool last.
        self.pool = CompressionPool(
            options.processes,
            settings.image_max_pixels,
            timeout_s=settings.image_compress_timeout_seconds,
        )
        stack.callback(self.pool.shutdown)
        await asyncio.to_thread(self.pool.warm_up)
        db = await create_pool(settings, min_size=1)
        stack.push_async_callback(db.close)
        redis = product_cache.connect(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        cache = product_cache.ProductCache(
            redis,
            ttl_s=settings.cache_ttl_seconds,
            negative_ttl_s=settings.cache_negative_ttl_seconds,
        )
        session = create_session(settings, connections=options.download_concurrency)
        stack.push_async_callback(session.close)
        storage = create_storage(settings, threads=options.upload_concurrency)
        stack.push_async_callback(storage.close)
        self.pipeline = Pipeline(
            settings=settings,
            downloader=Downloader(session, settings),
            pool=self.pool,
            storage=storage,
            db=db,
            cache=cache,
            metrics=self.metrics,
            download_concurrency=options.download_concurrency,
            upload_concurrency=options.upload_concurrency,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True
        )
        await self.producer.start()
        stack.push_async_callback(self.producer.stop)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=options.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=256 * 1024,  # jobs are small; fetch few at a time
        )
        self.consumer.subscribe([settings.kafka_jobs_topic], listener=_Rebalance(self))
        await self.consumer.start()
        stack.push_async_callback(self.consumer.stop)
        await self._serve_metrics(stack)

    async def _ensure_topics(self) -> None:
        settings = self.settings
        attempt = 0
        while True:
            try:
                await ensure_job_topics(settings)
                return
            except (KafkaError, OSError) as exc:
                attempt += 1
                delay = min(5.0, 0.2 * 2**attempt)
                log.warning(
                    "worker.kafka_unavailable", extra={"error": repr(exc), "retry_in_s": delay}
                )
                await asyncio.sleep(delay)

    async def _serve_metrics(self, stack: AsyncExitStack) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/healthz", self._health_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.options.metrics_host, self.options.metrics_port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else self.options.metrics_port
        log.info(
            "worker.metrics_listening", extra={"host": self.options.metrics_host, "port": port}
        )

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        for name, stage in self.pipeline.stages.items():
            self.metrics.queue_depth.labels(name).set(stage.waiting)
        self.metrics.inflight_jobs.set(len(self.tasks))
        self.metrics.pool_rebuilds.set(self.pool.rebuilds)
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _health_handler(self, request: web.Request) -> web.Response:
        if self.joined and not self.stopping.is_set():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)

    # -- consuming -----------------------------------------------------------------------------

    async def _consume(self) -> None:
        consumer = self.consumer
        while not self.stopping.is_set():
            free = self.options.max_inflight_jobs - len(self.tasks)
            assigned = consumer.assignment()
            if free <= 0:
                consumer.pause(*assigned)  # keeps polling (and the membership) without fetching
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=max(free, 1))
            for tp, messages in batches.items():
                for message in messages:
                    self._start_job(tp, message)
            await self._commit(consumer.assignment())

    def _start_job(self, tp: TopicPartition, message) -> None:  # type: ignore[no-untyped-def]
        self.offsets.started(tp, message.offset)
        task = asyncio.create_task(self._handle(tp, message))
        self.tasks[(tp, message.offset)] = task

        def done(finished: asyncio.Task[None]) -> None:
            key = (tp, message.offset)
            # By identity: after a revoke and a reassignment, a late-finishing cancelled task
            # must not untrack the redelivered job's task under the same key.
            if self.tasks.get(key) is finished:
                del self.tasks[key]
            if finished.cancelled():
                return
            if (error := finished.exception()) is not None:
                # _handle handles every failure of a job; this is a bug in that handling. The
                # offset stays unfinished (the job is redelivered after a restart), so say so.
                log.error(
                    "job.unhandled_error",
                    extra={"partition": tp.partition, "offset": message.offset},
                    exc_info=error,
                )
                return
            self.offsets.finished(tp, message.offset)

        task.add_done_callback(done)

    async def _handle(self, tp: TopicPartition, message) -> None:  # type: ignore[no-untyped-def]
        try:
            job = decode_job(message.value)
        except PoisonJob as exc:
            log.error(
                "job.poison",
                extra={"partition": tp.partition, "offset": message.offset, "error": str(exc)},
            )
            await self._dead_letter(message, exc, attempts=1, job=None)
            return
        log.info(
            "job.received",
            extra={
                "product_id": job.product_id,
                "images": len(job.image_urls),
                "partition": tp.partition,
                "offset": message.offset,
            },
        )
        try:
            await self.pipeline.process(job)
        except* JobExhausted as group:
            exhausted = group.exceptions[0]
            assert isinstance(exhausted, JobExhausted)
            await self._dead_letter(message, exhausted, attempts=exhausted.attempts, job=job)
        except* Exception as group:
            # A bug, not a bad image: dead-letter the job rather than block the partition.
            log.exception(
                "job.crashed", extra={"product_id": job.product_id}, exc_info=group.exceptions[0]
            )
            await self._dead_letter(message, group.exceptions[0], attempts=1, job=job)

    async def _dead_letter(
        self,
        message,
        error: BaseException,
        *,
        attempts: int,  # type: ignore[no-untyped-def]
        job: ImageJob | None,
    ) -> None:
        cause = error.failure if isinstance(error, JobExhausted) else error
        headers = dead_letter_headers(
            error_class=type(cause).__name__ if not hasattr(cause, "reason") else cause.reason,
            error_message=str(error),
            attempts=attempts,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            group=self.options.group_id,
            product_id=job.product_id if job else None,
        )
        where = {
            "product_id": job.product_id if job else None,
            "partition": message.partition,
            "offset": message.offset,
        }
        attempt = 0
        # Until the dead letter is stored, the job is not finished: keep trying (Kafka may be
        # down); shutdown abandons it uncommitted, so it is redelivered rather than lost.
        while True:
            try:
                await asyncio.wait_for(
                    self.producer.send_and_wait(
                        self.settings.kafka_dlq_topic,
                        message.value,
                        key=message.key,
                        headers=headers,
                    ),
                    30,
                )
            except _DEAD_LETTER_REFUSED as exc:
                # No retry can succeed, and waiting would hold the partition's commits for
                # ever. The product is marked failed below; this line keeps the job.
                self.metrics.jobs.labels("dead_letter_refused").inc()
                payload = (message.value or b"")[:4096].decode("utf-8", "replace")
                log.error(
                    "job.dead_letter_refused",
                    extra={**where, "error": repr(exc), "payload": payload},
                )
                break
            except (KafkaError, TimeoutError) as exc:
                attempt += 1
                log.warning("job.dead_letter_retry", extra={"error": repr(exc), "attempt": attempt})
                await asyncio.sleep(backoff_s(attempt, 1.0, cap_s=10))
            else:
                self.metrics.jobs.labels("dead_lettered").inc()
                log.error(
                    "job.dead_lettered", extra={**where, "error": str(error), "attempts": attempts}
                )
                break
        if job is not None:
            await self._mark_failed(job, str(error))

    async def _mark_failed(self, job: ImageJob, reason: str) -> None:
        try:
            await self.pipeline.finish_failed(job.product_id, job.image_urls, reason)
        except Exception as exc:
            # The dead letter holds the job; the product stays pending until it is replayed.
            log.error(
                "job.mark_failed_error", extra={"product_id": job.product_id, "error": repr(exc)}
            )

    async def _commit(self, tps: set[TopicPartition]) -> None:
        offsets = self.offsets.to_commit(tps)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group changed under us; the new owner re-reads from the last commit.
            log.warning("worker.commit_failed", extra={"error": repr(exc)})
            return
        except KafkaError as exc:
            log.warning("worker.commit_failed", extra={"error": repr(exc)})
            return
        self.offsets.committed(offsets)

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        await self._commit(revoked)
        for (tp, offset), task in list(self.tasks.items()):
            if tp in revoked:
                task.cancel()
                self.tasks.pop((tp, offset), None)
        self.offsets.forget(revoked)
        log.info("worker.revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    async def _drain(self) -> None:
        """Lets in-flight jobs finish within the shutdown timeout, then commits what finished."""
        self.consumer.pause(*self.consumer.assignment())
        pending = set(self.tasks.values())
        if pending:
            log.info("worker.draining", extra={"jobs": len(pending)})
            _, still = await asyncio.wait(pending, timeout=self.options.shutdown_timeout_s)
            for task in still:
                task.cancel()
            for task in still:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if still:
                log.warning("worker.abandoned", extra={"jobs": len(still)})
        await self._commit(self.consumer.assignment())
