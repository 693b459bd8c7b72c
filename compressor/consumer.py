"""The consume loop: image jobs from Kafka, each run as a task, their offsets committed.

At-least-once and idempotent: offsets are committed explicitly, only up to the lowest job still
in flight in each partition (jobs finish out of order). The consumer keeps polling while jobs
run or wait for a retry, pausing its partitions when --max-inflight-jobs is reached, so it never
falls out of its group. A revoked partition's jobs are cancelled: its new owner redoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from compressor.offsets import OffsetTracker

log = logging.getLogger("compressor")

POLL_TIMEOUT_MS = 100

Message: TypeAlias = ConsumerRecord[bytes, bytes]
# Runs one job to its end: every failure of the job is its to handle (see compressor.handling).
Handler: TypeAlias = Callable[[Message], Coroutine[Any, Any, None]]


class JobConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handle: Handler,
        stopping: asyncio.Event,
        *,
        max_inflight_jobs: int,
        shutdown_timeout_s: float,
    ) -> None:
        self.consumer = consumer
        self.handle = handle
        self.stopping = stopping
        self.max_inflight_jobs = max_inflight_jobs
        self.shutdown_timeout_s = shutdown_timeout_s
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.tasks: dict[tuple[TopicPartition, int], asyncio.Task[None]] = {}
        self.joined = False
        # To subscribe with, before the consumer starts.
        self.rebalance_listener: ConsumerRebalanceListener = _Rebalance(self)

    @property
    def inflight_jobs(self) -> int:
        return len(self.tasks)

    @property
    def healthy(self) -> bool:
        """In its group and not stopping."""
        return self.joined and not self.stopping.is_set()

    async def run(self) -> None:
        """Consumes until `stopping` is set, then lets the jobs in flight finish (within the
        shutdown timeout) and commits what finished."""
        consumer = self.consumer
        while not self.stopping.is_set():
            free = self.max_inflight_jobs - len(self.tasks)
            if free <= 0:
                # Keeps polling (and the membership) without fetching.
                consumer.pause(*consumer.assignment())
            elif consumer.paused():
                consumer.resume(*consumer.paused())
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=max(free, 1))
            for tp, messages in batches.items():
                for message in messages:
                    self._start_job(tp, message)
            await self.commit(consumer.assignment())
        await self._drain()

    def _start_job(self, tp: TopicPartition, message: Message) -> None:
        key = (tp, message.offset)
        self.offsets.started(tp, message.offset)
        task = asyncio.create_task(self.handle(message))
        self.tasks[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            # By identity: after a revoke and a reassignment, a late-finishing cancelled task
            # must not untrack the redelivered job's task under the same key.
            if self.tasks.get(key) is finished:
                del self.tasks[key]
            if finished.cancelled():
                return
            if (error := finished.exception()) is not None:
                # The handler handles every failure of a job; this is a bug in that handling.
                # The offset stays unfinished (the job is redelivered after a restart): say so.
                log.error(
                    "job.unhandled_error",
                    extra={"partition": tp.partition, "offset": message.offset},
                    exc_info=error,
                )
                return
            self.offsets.finished(tp, message.offset)

        task.add_done_callback(done)

    async def commit(self, tps: set[TopicPartition]) -> None:
        offsets = self.offsets.to_commit(tps)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # CommitFailedError and IllegalStateError among them: the group changed under us,
            # and the new owner re-reads from the last commit. Any other: the next commit
            # carries these positions again.
            log.warning("worker.commit_failed", extra={"error": repr(exc)})
            return
        self.offsets.committed(offsets)

    def assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined = True
        log.info("worker.assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        await self.commit(revoked)
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
            _, still = await asyncio.wait(pending, timeout=self.shutdown_timeout_s)
            for task in still:
                task.cancel()
            for task in still:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if still:
                log.warning("worker.abandoned", extra={"jobs": len(still)})
        await self.commit(self.consumer.assignment())


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, jobs: JobConsumer) -> None:
        self.jobs = jobs

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.jobs.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.jobs.assigned(assigned)
