"""The consume loop over a stand-in Kafka consumer: jobs run as tasks, offsets are committed up
to the lowest unfinished job, a failed commit is carried by the next one, and the in-flight cap
pauses the partitions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError

from compressor.consumer import JobConsumer, Message

TP = TopicPartition("jobs", 0)


def record(offset: int) -> Message:
    # Key and value are never read: the handler is a stand-in too.
    return ConsumerRecord("jobs", 0, offset, 0, 0, b"7", b"{}", None, 1, 2, [])


@dataclass
class Kafka:
    """assignment/pause/resume/paused/getmany/commit, with a queue of batches to hand out."""

    batches: list[list[Message]] = field(default_factory=list)
    commit_errors: list[KafkaError] = field(default_factory=list)
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    paused_tps: set[TopicPartition] = field(default_factory=set)
    polled_while_paused: int = 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    async def getmany(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Message]]:
        await asyncio.sleep(0)
        if self.paused_tps:
            self.polled_while_paused += 1
            return {}
        if not self.batches:
            return {}
        batch, rest = self.batches[0][:max_records], self.batches[0][max_records:]
        self.batches[0:1] = [rest] if rest else []
        return {TP: batch}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.commits.append(dict(offsets))


@dataclass
class Jobs:
    """A handler whose jobs finish when the test says so."""

    release: dict[int, asyncio.Event] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        self.started.append(message.offset)
        await self.release.setdefault(message.offset, asyncio.Event()).wait()

    def finish(self, offset: int) -> None:
        self.release.setdefault(offset, asyncio.Event()).set()


def consumer_with(kafka: Kafka, jobs: Jobs, max_inflight_jobs: int = 10) -> JobConsumer:
    return JobConsumer(
        cast(AIOKafkaConsumer, kafka),  # the six calls above
        jobs,
        asyncio.Event(),
        max_inflight_jobs=max_inflight_jobs,
        shutdown_timeout_s=5.0,
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    """Lets the loop run until `condition` holds (no clock: a bounded number of turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(what)


async def test_offsets_are_committed_up_to_the_lowest_unfinished_job():
    kafka = Kafka(batches=[[record(0), record(1), record(2)]])
    jobs = Jobs()
    consumer = consumer_with(kafka, jobs)
    running = asyncio.create_task(consumer.run())
    await until(lambda: jobs.started == [0, 1, 2], "the jobs did not start")
    jobs.finish(1)
    jobs.finish(2)
    await until(lambda: consumer.inflight_jobs == 1, "jobs 1 and 2 did not finish")
    assert [c[TP] for c in kafka.commits] == [0]  # 0 still runs: nothing past it is safe
    jobs.finish(0)
    await until(lambda: kafka.commits[-1] == {TP: 3}, "no commit after the last job")
    consumer.stopping.set()
    await running


@pytest.mark.parametrize(
    "error", [CommitFailedError("rebalanced"), KafkaTimeoutError()], ids=["group", "other"]
)
async def test_a_failed_commit_leaves_its_positions_to_the_next_commit(error, caplog):
    kafka = Kafka(commit_errors=[error])
    consumer = consumer_with(kafka, Jobs())
    consumer.offsets.started(TP, 4)
    consumer.offsets.finished(TP, 4)

    await consumer.commit({TP})
    assert kafka.commits == []
    assert [r.getMessage() for r in caplog.records] == ["worker.commit_failed"]

    await consumer.commit({TP})
    assert kafka.commits == [{TP: 5}]


async def test_the_consumer_pauses_at_the_in_flight_cap_and_resumes_below_it():
    kafka = Kafka(batches=[[record(0), record(1)]])
    jobs = Jobs()
    consumer = consumer_with(kafka, jobs, max_inflight_jobs=1)
    running = asyncio.create_task(consumer.run())
    await until(lambda: kafka.polled_while_paused > 0, "never paused")
    assert jobs.started == [0]  # the second job waits in Kafka
    jobs.finish(0)
    await until(lambda: jobs.started == [0, 1], "never resumed")
    jobs.finish(1)
    consumer.stopping.set()
    await running
    assert kafka.commits[-1] == {TP: 2}
