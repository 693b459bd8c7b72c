"""What becomes of one message: a poison message, a job that ran out of attempts and a job that
crashed each leave exactly one dead letter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from aiokafka import ConsumerRecord

from catalogue.jobs import ImageJob, encode_job
from compressor.consumer import Message
from compressor.dead_letters import DeadLetters
from compressor.errors import JobExhausted, transient
from compressor.handling import JobHandler

JOB = ImageJob(7, ("https://x/a.jpg", "https://x/b.jpg"))


def record(value: bytes) -> Message:
    return ConsumerRecord("jobs", 0, 3, 0, 0, b"7", value, None, 1, len(value), [])


@dataclass
class Letters:
    sent: list[tuple[str, int, ImageJob | None]] = field(default_factory=list)

    async def send(
        self, message: Message, error: BaseException, *, attempts: int, job: ImageJob | None
    ) -> None:
        self.sent.append((type(error).__name__, attempts, job))


@dataclass
class Pipeline:
    errors: list[BaseException]

    async def process(self, job: ImageJob) -> str:
        async with asyncio.TaskGroup() as group:  # as the images of a job fail
            for error in self.errors:
                group.create_task(self._fail(error))
        return "done"

    async def _fail(self, error: BaseException) -> None:
        raise error


def handler(letters: Letters, *errors: BaseException) -> JobHandler:
    return JobHandler(Pipeline(list(errors)), cast(DeadLetters, letters))  # send only


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
