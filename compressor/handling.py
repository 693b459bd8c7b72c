"""What becomes of one message: decoded, run (an image job through the pipeline, a clean-up of
stored objects through compressor.cleanup), dead-lettered if it cannot finish. Every failure of
a job ends here, so the consumer only ever sees jobs that finished."""

from __future__ import annotations

import logging
from typing import Protocol, TypeVar

from catalogue import spans, tracing
from catalogue.jobs import DeleteObjects, ImageJob, Job, PoisonJob, decode_job
from compressor.consumer import Message
from compressor.dead_letters import DeadLetters
from compressor.errors import JobExhausted

log = logging.getLogger("compressor")
E = TypeVar("E", bound=BaseException)


class JobRunner(Protocol):
    async def process(self, job: ImageJob) -> str: ...


class CleanupRunner(Protocol):
    async def run(self, job: DeleteObjects) -> int: ...


class JobHandler:
    def __init__(
        self, pipeline: JobRunner, cleanup: CleanupRunner, dead_letters: DeadLetters
    ) -> None:
        self.pipeline = pipeline
        self.cleanup = cleanup
        self.dead_letters = dead_letters

    async def __call__(self, message: Message) -> None:
        # The job's work is a step of the trace that queued it (a job without one, say from
        # kcat, starts its own): every line it logs, and what it writes to the outbox, carry it.
        parent = tracing.from_kafka_headers(message.headers)
        with spans.step("job", parent, "consumer", partition=message.partition):
            await self._handle(message)

    async def _handle(self, message: Message) -> None:
        where = {"partition": message.partition, "offset": message.offset}
        try:
            job = decode_job(message.value)
        except PoisonJob as exc:
            log.error("job.poison", extra={**where, "error": str(exc)})
            await self.dead_letters.send(message, exc, attempts=1, job=None)
            return
        log.info("job.received", extra={**_described(job), **where})
        error: BaseException | None = None
        attempts = 1
        try:
            await self._run(job)
        except* JobExhausted as group:
            exhausted = _first(group)
            error, attempts = exhausted, exhausted.attempts
        except* Exception as group:
            # A bug, not a bad image: dead-letter the job rather than block the partition.
            crash = _first(group)
            log.exception("job.crashed", extra={"product_id": job.product_id}, exc_info=crash)
            error = error or crash
        if error is not None:  # one dead letter, whichever failures the job's tasks raised
            await self.dead_letters.send(message, error, attempts=attempts, job=job)

    async def _run(self, job: Job) -> None:
        if isinstance(job, DeleteObjects):
            await self.cleanup.run(job)
        else:
            await self.pipeline.process(job)


def _described(job: Job) -> dict[str, object]:
    if isinstance(job, DeleteObjects):
        return {"product_id": job.product_id, "kind": "delete_objects", "keys": len(job.keys)}
    return {
        "product_id": job.product_id,
        "kind": "images",
        "revision": job.revision,
        "images": len(job.image_urls),
    }


def _first(group: BaseExceptionGroup[E]) -> E:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
