"""Pure pieces of the worker: offsets, error classes, keys and URLs, outcomes, the job format."""

from __future__ import annotations

import asyncio
from concurrent.futures.process import BrokenProcessPool

import aiohttp
import asyncpg
import pytest
from redis.exceptions import RedisError

from catalogue.images import image_key
from catalogue.jobs import ImageJob, PoisonJob, decode_job, encode_job
from catalogue.retry import RetryPolicy
from compressor.compress import ImageRejected
from compressor.errors import ImageFailure, classify, http_status_failure
from compressor.offsets import OffsetTracker
from compressor.results import ImageResult, outcome
from compressor.storage import public_url


def test_offsets_commit_only_below_the_lowest_unfinished_job():
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started("p0", offset)
    tracker.finished("p0", 12)
    tracker.finished("p0", 11)
    assert tracker.to_commit() == {"p0": 10}  # 10 still runs: nothing past it is safe
    tracker.finished("p0", 10)
    assert tracker.to_commit() == {"p0": 13}


def test_offsets_are_tracked_per_partition():
    tracker = OffsetTracker()
    tracker.started("p0", 5)
    tracker.started("p1", 7)
    tracker.finished("p1", 7)
    assert tracker.to_commit() == {"p0": 5, "p1": 8}


def test_committed_positions_are_not_committed_again():
    tracker = OffsetTracker()
    tracker.started("p0", 1)
    tracker.finished("p0", 1)
    tracker.committed(tracker.to_commit())
    assert tracker.to_commit() == {}


def test_revoked_partition_is_forgotten_and_its_late_completions_ignored():
    tracker = OffsetTracker()
    tracker.started("p0", 3)
    tracker.started("p1", 4)
    tracker.forget(["p0"])
    tracker.finished("p0", 3)
    assert tracker.to_commit() == {"p1": 4}
    assert tracker.inflight() == 1


def test_to_commit_can_be_limited_to_some_partitions():
    tracker = OffsetTracker()
    tracker.started("p0", 1)
    tracker.started("p1", 1)
    assert tracker.to_commit(["p1"]) == {"p1": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_429_are_transient(status):
    assert http_status_failure(status).transient


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 418])
def test_client_errors_are_permanent(status):
    assert not http_status_failure(status).transient


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TimeoutError(), True),
        (aiohttp.ClientConnectionError("reset"), True),
        (ConnectionRefusedError(), True),
        (BrokenProcessPool(), True),
        (ImageRejected("decompression_bomb"), False),
        (ImageRejected("corrupt"), False),
        (ImageRejected("not_an_image"), False),
        (ImageFailure("too_large", transient=False), False),
    ],
)
def test_errors_are_classified(exc, transient):
    assert classify(exc).transient is transient


def test_rejected_image_keeps_its_reason():
    assert classify(ImageRejected("decompression_bomb", "60 MP")).reason == "decompression_bomb"


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    def backoff_s(attempt: int, base_s: float, *, cap_s: float = 60.0) -> float:
        return RetryPolicy(base_s, cap_s).delay_s(attempt)

    assert all(0 <= backoff_s(1, 1.0) <= 1.0 for _ in range(100))
    assert all(0 <= backoff_s(4, 1.0) <= 8.0 for _ in range(100))
    assert max(backoff_s(30, 1.0, cap_s=5) for _ in range(100)) <= 5


def test_image_key_is_content_addressed():
    assert image_key(7, b"abc", "jpg") == image_key(7, b"abc", "jpg")
    assert image_key(7, b"abc", "jpg") != image_key(7, b"abd", "jpg")
    assert image_key(7, b"abc", "jpg").startswith("products/7/")
    assert image_key(7, b"abc", "jpg").endswith(".jpg")


@pytest.mark.parametrize("base", ["http://cdn.test/images", "http://cdn.test/images/"])
def test_public_url_joins_with_exactly_one_slash(base):
    assert public_url(base, "products/1/a.jpg") == "http://cdn.test/images/products/1/a.jpg"


def test_outcome_of_a_job():
    ok, bad = (
        ImageResult("a", url="u"),
        ImageResult("b", failure=ImageFailure("x", transient=False)),
    )
    assert outcome([ok, ok]) == "done"
    assert outcome([ok, bad]) == "partial"
    assert outcome([bad, bad]) == "failed"


def test_job_round_trips():
    job = ImageJob(42, ("http://a.test/1.jpg",))
    assert decode_job(encode_job(job)) == job


def test_job_written_by_postgres_jsonb_is_read():
    payload = b'{"v": 1, "product_id": "42", "product_images": ["http://a.test/1.jpg"]}'
    assert decode_job(payload) == ImageJob(42, ("http://a.test/1.jpg",))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1, "product_id": "x", "product_images": []}',
        b'{"v": 1, "product_id": "1", "product_images": "u"}',
        '{"v": 1, "product_id": "\u00b2", "product_images": []}'.encode(),
        b'{"v": 1, "product_id": "0", "product_images": []}',
        b'{"v": 1, "product_id": "9223372036854775808", "product_images": []}',
        b'{"v": 1, "product_id": "' + b"9" * 5000 + b'", "product_images": []}',
        None,
    ],
)
def test_poison_messages_are_recognised(payload):
    with pytest.raises(PoisonJob):
        decode_job(payload)


async def test_single_flight_runs_concurrent_work_once():
    from server.singleflight import SingleFlight

    calls = 0
    release = asyncio.Event()

    async def work():
        nonlocal calls
        calls += 1
        await release.wait()
        return b"value"

    flight = SingleFlight()
    waiters = [asyncio.create_task(flight.run(1, work)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [b"value"] * 20
    assert calls == 1
    assert len(flight) == 0


@pytest.mark.parametrize("exc", [KeyError("width"), TypeError("bad operand"), ZeroDivisionError()])
def test_errors_of_no_known_kind_are_retried_but_flagged_unexpected(exc):
    failure = classify(exc)
    assert failure.transient  # retrying is cheap, losing the image is not
    assert failure.unexpected  # but it is logged as the bug it most likely is
    assert failure.reason == type(exc).__name__
    assert failure.detached().unexpected


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        ConnectionRefusedError(),
        OSError("No space left on device"),
        aiohttp.ClientPayloadError("cut short"),
        asyncpg.PostgresConnectionError("gone"),
        RedisError("down"),
        BrokenProcessPool(),
        ImageRejected("corrupt"),
        ImageFailure("too_large", transient=False),
    ],
)
def test_errors_of_a_known_kind_are_not_unexpected(exc):
    assert not classify(exc).unexpected
