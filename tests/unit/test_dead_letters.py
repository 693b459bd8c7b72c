"""The supervisor's dead-letter step with a stand-in producer: it waits out a Kafka that is
down, and gives up only on a dead letter Kafka will never take."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from catalogue.jobs import ImageJob
from compressor import supervisor as supervisor_module
from compressor.errors import transient
from compressor.pipeline import JobExhausted
from compressor.supervisor import Supervisor, WorkerOptions
from config import load_settings

MESSAGE = SimpleNamespace(
    value=b'{"v": 1, "product_id": "7", "product_images": ["https://x/a.jpg"]}',
    key=b"7",
    topic="jobs",
    partition=0,
    offset=41,
)
JOB = ImageJob(7, ("https://x/a.jpg",))


@dataclass
class Producer:
    errors: list[Exception]
    sent: list[bytes] = field(default_factory=list)

    async def send_and_wait(self, topic, value, key=None, headers=None):  # type: ignore[no-untyped-def]
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(value)


@dataclass
class Pipeline:
    failed: list[int] = field(default_factory=list)

    async def finish_failed(self, product_id: int, sources, reason: str) -> None:  # type: ignore[no-untyped-def]
        self.failed.append(product_id)


def supervisor_with(producer: Producer, monkeypatch) -> Supervisor:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(supervisor_module, "backoff_s", lambda *args, **kwargs: 0)
    options = WorkerOptions(1, 1, 1, 1, "group", "127.0.0.1", 0, 1.0)
    supervisor = Supervisor(load_settings({}, dotenv=None), options)
    supervisor.producer = producer  # type: ignore[assignment]
    supervisor.pipeline = Pipeline()  # type: ignore[assignment]
    return supervisor


def jobs_counted(supervisor: Supervisor, status: str) -> float:
    return supervisor.metrics.jobs.labels(status)._value.get()


async def test_a_dead_letter_waits_out_a_kafka_that_is_down(monkeypatch):
    producer = Producer([KafkaTimeoutError(), KafkaTimeoutError()])
    supervisor = supervisor_with(producer, monkeypatch)
    exhausted = JobExhausted(transient("http_status", "HTTP 503"), 4)

    await supervisor._dead_letter(MESSAGE, exhausted, attempts=4, job=JOB)

    assert producer.sent == [MESSAGE.value]
    assert jobs_counted(supervisor, "dead_lettered") == 1
    assert supervisor.pipeline.failed == [7]  # type: ignore[attr-defined]


async def test_a_dead_letter_kafka_will_never_take_is_logged_not_retried_for_ever(
    monkeypatch, caplog
):
    producer = Producer([MessageSizeTooLargeError()])
    supervisor = supervisor_with(producer, monkeypatch)
    exhausted = JobExhausted(transient("http_status", "HTTP 503"), 4)

    await supervisor._dead_letter(MESSAGE, exhausted, attempts=4, job=JOB)

    assert producer.sent == []
    assert jobs_counted(supervisor, "dead_letter_refused") == 1
    assert jobs_counted(supervisor, "dead_lettered") == 0
    assert supervisor.pipeline.failed == [7]  # type: ignore[attr-defined]
    refused = [r for r in caplog.records if r.getMessage() == "job.dead_letter_refused"]
    assert refused
    assert refused[0].payload == MESSAGE.value.decode()
