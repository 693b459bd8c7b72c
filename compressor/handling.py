"""What becomes of one message: decoded, run through the pipeline, dead-lettered if it cannot
finish. Every failure of a job ends here, so the consumer only ever sees jobs that finished."""

from __future__ import annotations

import logging
from typing import Protocol, TypeVar

from catalogue.jobs import ImageJob, PoisonJob, decode_job
from compressor.consumer import Message
from compressor.dead_letters import DeadLetters
from compressor.errors import JobExhausted

log = logging.getLogger("compressor")
E = TypeVar("E", bound=BaseException)


class JobRunner(Protocol):
    async def process(self, job: ImageJob) -> str: ...


class JobHandler:
    def __init__(self, pipeline: JobRunner, dead_letters: DeadLetters) -> None:
        self.pipeline = pipeline
        self.dead_letters = dead_letters

    async def __call__(self, message: Message) -> None:
        where = {"partition": message.partition, "offset": message.offset}
        try:
            job = decode_job(message.value)
        except PoisonJob as exc:
            log.error("job.poison", extra={**where, "error": str(exc)})
            await self.dead_letters.send(message, exc, attempts=1, job=None)
            return
        log.info(
            "job.received",
            extra={"product_id": job.product_id, "images": len(job.image_urls), **where},
        )
        error: BaseException | None = None
        attempts = 1
        try:
            await self.pipeline.process(job)
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


def _first(group: BaseExceptionGroup[E]) -> E:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
