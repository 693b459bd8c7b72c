"""What becomes of one message: a poison message, a job that ran out of attempts and a job that
crashed each leave exactly one dead letter; a clean-up job goes to the clean-up, not the
pipeline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from aiokafka import ConsumerRecord

from catalogue.jobs import DeleteObjects, ImageJob, Job, encode_job
from compressor.consumer import Message
from compressor.dead_letters import DeadLetters
from compressor.errors import JobExhausted, transient
from compressor.handling import JobHandler

JOB = ImageJob(7, ("https://x/a.jpg", "https://x/b.jpg"))


def record(value: bytes) -> Message:
    return ConsumerRecord("jobs", 0, 3, 0, 0, b"7", value, None, 1, len(value), [])


@dataclass
class Letters:
    sent: list[tuple[str, int, Job | None]] = field(default_factory=list)

    async def send(
        self, message: Message, error: BaseException, *, attempts: int, job: Job | None
    ) -> None:
        self.sent.append((type(error).__name__, attempts, job))


@dataclass
class Cleanup:
    errors: list[BaseException] = field(default_factory=list)
    ran: list[DeleteObjects] = field(default_factory=list)

    async def run(self, job: DeleteObjects) -> int:
        self.ran.append(job)
        if self.errors:
            raise self.errors.pop(0)
        return len(job.keys)


@dataclass
class Pipeline:
    errors: list[BaseException]
    processed: list[ImageJob] = field(default_factory=list)

    async def process(self, job: ImageJob) -> str:
        self.processed.append(job)
        async with asyncio.TaskGroup() as group:  # as the images of a job fail
            for error in self.errors:
                group.create_task(self._fail(error))
        return "done"

    async def _fail(self, error: BaseException) -> None:
        raise error


def handler(letters: Letters, *errors: BaseException, cleanup: Cleanup | None = None) -> JobHandler:
    return JobHandler(
        Pipeline(list(errors)),
        cleanup or Cleanup(),
        cast(DeadLetters, letters),  # send only
    )


async def test_a_poison_message_is_dead_lettered_without_a_job(caplog):
    letters = Letters()
    await handler(letters)(record(b"not json"))
    assert letters.sent == [("PoisonJob", 1, None)]
    assert "job.poison" in [r.getMessage() for r in caplog.records]


async def test_a_job_that_finishes_leaves_no_dead_letter():
    letters = Letters()
    await handler(letters)(record(encode_job(JOB)))
    assert letters.sent == []


async def test_an_exhausted_job_is_dead_lettered_once_with_its_attempts():
    letters = Letters()
    exhausted = JobExhausted(transient("http_status", "HTTP 503"), 4)
    await handler(letters, exhausted, exhausted)(record(encode_job(JOB)))
    assert letters.sent == [("JobExhausted", 4, JOB)]


async def test_a_crashed_job_is_logged_and_dead_lettered_once(caplog):
    letters = Letters()
    exhausted = JobExhausted(transient("http_status", "HTTP 503"), 4)
    await handler(letters, exhausted, KeyError("bug"))(record(encode_job(JOB)))
    assert letters.sent == [("JobExhausted", 4, JOB)]  # not a second letter for the crash
    assert "job.crashed" in [r.getMessage() for r in caplog.records]


async def test_a_clean_up_job_runs_the_clean_up_not_the_pipeline():
    letters, cleanup = Letters(), Cleanup()
    handle = handler(letters, cleanup=cleanup)
    job = DeleteObjects(7, ("products/7/a.jpg",))

    await handle(record(encode_job(job)))

    assert cleanup.ran == [job]
    pipeline = handle.pipeline
    assert isinstance(pipeline, Pipeline)
    assert pipeline.processed == []
    assert letters.sent == []


async def test_a_clean_up_that_keeps_failing_is_dead_lettered_once():
    letters = Letters()
    exhausted = JobExhausted(transient("OSError", "disk gone"), 4)
    job = DeleteObjects(7, ("products/7/a.jpg",))

    await handler(letters, cleanup=Cleanup([exhausted]))(record(encode_job(job)))

    assert letters.sent == [("JobExhausted", 4, job)]
