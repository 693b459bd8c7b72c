"""Sending a job that cannot finish to the dead-letter topic, then marking the entries it left
pending failed (those still pending at its revision: a product changed since keeps its state).

Until the dead letter is stored and its entries are marked, the job is not finished: a Kafka
or a PostgreSQL that is down is waited out, and a shutdown abandons the job uncommitted, so it is
redelivered rather than lost. Only a dead letter Kafka will never accept is given up, and then
logged whole. (A job often dead-letters *because* PostgreSQL is down, so giving up the marking
then left its entries pending for good: the soak found such products once idle.) The format of a dead letter,
and reading them back, is compressor.dlq's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAuthorizationFailedError

from catalogue.jobs import ImageJob, Job
from catalogue.retry import RetryPolicy, retry
from compressor.consumer import Message
from compressor.dlq import dead_letter_headers
from compressor.errors import JobExhausted
from compressor.metrics import WorkerMetrics

log = logging.getLogger("compressor")

# Dead letters Kafka will never accept, however long the worker waits. (aiokafka's `retriable`
# flag cannot tell: a broker that is down shows as KafkaTimeoutError, also not "retriable".)
_REFUSED = (MessageSizeTooLargeError, TopicAuthorizationFailedError)
PUBLISH_RETRY = RetryPolicy(base_s=1.0, cap_s=10.0)  # no bound: see the module's docstring
PUBLISH_TIMEOUT_S = 30.0
# What a PostgreSQL that is down, restarting or overloaded raises: waited out when marking.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
)


class FailedProducts(Protocol):
    async def mark_failed(self, job: ImageJob, reason: str) -> None:
        """See compressor.results.ProductResults."""


def _may_be_accepted(error: BaseException) -> bool:
    return not isinstance(error, _REFUSED)


def error_class(error: BaseException) -> str:
    """What the dead letter names as its error: the failure's reason, or the exception type."""
    cause = error.failure if isinstance(error, JobExhausted) else error
    reason = getattr(cause, "reason", None)
    return reason if isinstance(reason, str) else type(cause).__name__


class DeadLetters:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        products: FailedProducts,
        metrics: WorkerMetrics,
        *,
        topic: str,
        group_id: str,
        retry_policy: RetryPolicy = PUBLISH_RETRY,
    ) -> None:
        self.producer = producer
        self.products = products
        self.metrics = metrics
        self.topic = topic
        self.group_id = group_id
        self.retry_policy = retry_policy

    async def send(
        self, message: Message, error: BaseException, *, attempts: int, job: Job | None
    ) -> None:
        """Stores the message with the error on the dead-letter topic, then marks the image
        job's entries failed (a poison message has no job, and a clean-up no entries to mark)."""
        headers = dead_letter_headers(
            error_class=error_class(error),
            error_message=str(error),
            attempts=attempts,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            group=self.group_id,
            product_id=job.product_id if job else None,
        )
        where = {
            "product_id": job.product_id if job else None,
            "partition": message.partition,
            "offset": message.offset,
        }
        try:
            await retry(
                lambda: self._publish(message, headers),
                self.retry_policy,
                what="job.dead_letter",
                retry_on=(KafkaError, TimeoutError),
                is_transient=_may_be_accepted,
                log_extra=where,
            )
        except _REFUSED as exc:
            # No retry can succeed, and waiting would hold the partition's commits for ever.
            # The product is marked failed below; this line keeps the job.
            self.metrics.jobs.labels("dead_letter_refused").inc()
            payload = (message.value or b"")[:4096].decode("utf-8", "replace")
            log.error(
                "job.dead_letter_refused", extra={**where, "error": repr(exc), "payload": payload}
            )
        else:
            self.metrics.jobs.labels("dead_lettered").inc()
            log.error(
                "job.dead_lettered", extra={**where, "error": str(error), "attempts": attempts}
            )
        if isinstance(job, ImageJob):
            await self._mark_failed(job, str(error))

    async def _publish(self, message: Message, headers: list[tuple[str, bytes]]) -> None:
        await asyncio.wait_for(
            self.producer.send_and_wait(
                self.topic, message.value, key=message.key, headers=headers
            ),
            PUBLISH_TIMEOUT_S,
        )

    async def _mark_failed(self, job: ImageJob, reason: str) -> None:
        try:
            await retry(
                lambda: self.products.mark_failed(job, reason),
                self.retry_policy,
                what="job.mark_failed",
                retry_on=DATABASE_DOWN,
                log_extra={"product_id": job.product_id},
            )
        except Exception as exc:
            # A bug, not an outage: the dead letter holds the job; its entries stay pending
            # until it is replayed.
            log.error(
                "job.mark_failed_error", extra={"product_id": job.product_id, "error": repr(exc)}
            )
