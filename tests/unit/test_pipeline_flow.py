"""How images flow through the worker's stages, with in-memory stand-ins for the network, the
process pool, the storage and the database (the real ones are in tests/integration)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
import pytest

from catalogue.jobs import ImageJob
from compressor.compress import CompressedImage, CompressOptions
from compressor.download import Downloaded
from compressor.errors import permanent, transient
from compressor.metrics import WorkerMetrics
from compressor.pipeline import Compressor, Fetcher, Pipeline, job_retry_policy
from compressor.results import ProductResults
from config import Settings, load_settings

RAW = b"\xff\xd8\xff" + b"\0" * 1000


@dataclass
class Sources:
    """Answers at once, counting the raw images handed out and not yet compressed."""

    held: int = 0
    most_held: int = 0
    fetched: int = 0

    async def fetch(self, url: str) -> Downloaded:
        await asyncio.sleep(0)
        self.fetched += 1
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        return Downloaded(RAW, url, 0.1)


@dataclass
class GatedPool:
    """Compresses only while the gate is open, like CPUs slower than the sources."""

    sources: Sources
    processes: int = 1
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def compress(self, data: bytes, options: CompressOptions) -> CompressedImage:
        await self.gate.wait()
        self.sources.held -= 1
        return CompressedImage(data[:10], 1, 1, "image/jpeg", "jpg", "JPEG", 1, 1)


class Storage:
    async def put(self, key: str, data: bytes, content_type: str) -> str:
        return key


class NoProducts:
    async def fetchval(self, *args: object) -> str:
        return "pending"

    async def fetchrow(self, *args: object) -> None:
        return None  # the product is gone: finish logs it and returns


async def settled() -> None:
    """Lets every task run until none can make progress."""
    for _ in range(200):
        await asyncio.sleep(0)


def pipeline_with(
    downloader: Fetcher,
    pool: Compressor,
    download_concurrency: int = 3,
    *,
    settings: Settings | None = None,
    db: object | None = None,
    cache: FlakyCache | None = None,
) -> Pipeline:
    settings = settings or load_settings({}, dotenv=None)
    results = ProductResults(
        cast(asyncpg.Pool, db or NoProducts()),  # the two queries the pipeline makes
        cache or FlakyCache(failures=0),
        retry_policy=job_retry_policy(settings),
        cache_ttl_s=settings.cache_ttl_seconds,
    )
    return Pipeline(
        settings=settings,
        downloader=downloader,
        pool=pool,
        storage=Storage(),
        results=results,
        metrics=WorkerMetrics(),
        download_concurrency=download_concurrency,
        upload_concurrency=2,
    )


async def test_raw_images_held_never_exceed_the_download_and_compress_slots():
    sources = Sources()
    pool = GatedPool(sources)
    download_concurrency = 3
    pipeline = pipeline_with(sources, pool, download_concurrency)
    compress_slots = 2 * pool.processes
    jobs = [ImageJob(n, tuple(f"http://img/{n}/{i}.jpg" for i in range(10))) for n in range(3)]
    running = [asyncio.create_task(pipeline.process(job)) for job in jobs]

    await settled()
    # Sources far faster than the CPUs: downloads stop once the finished ones fill both stages.
    assert sources.fetched == download_concurrency + compress_slots
    assert pipeline.stages["compress"].waiting == download_concurrency

    pool.gate.set()
    assert await asyncio.gather(*running) == ["done"] * len(jobs)
    assert sources.fetched == 30
    assert sources.most_held == download_concurrency + compress_slots


class Source:
    """A downloaded image that a test can watch being freed (bytes take no weak references)."""

    def __len__(self) -> int:
        return len(RAW)


@dataclass
class WatchedSources:
    sources: dict[str, weakref.ref[Source]] = field(default_factory=dict)

    async def fetch(self, url: str) -> Downloaded:
        source = Source()
        self.sources[url] = weakref.ref(source)
        return Downloaded(cast(bytes, source), url, 0.1)  # a stand-in for the bytes

    def alive(self, url: str) -> bool:
        return self.sources[url]() is not None


@dataclass
class FailingPool:
    """Fails the images named in `fail` with the given failure; holds the others at the gate."""

    sources: WatchedSources
    fail: dict[str, Exception]
    processes: int = 1
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def compress(self, data: object, options: CompressOptions) -> CompressedImage:
        url = next(u for u, ref in self.sources.sources.items() if ref() is data)
        if url in self.fail:
            raise self.fail.pop(url)  # no local name: a frame holding its own exception is a cycle
        await self.gate.wait()
        return CompressedImage(b"x", 1, 1, "image/jpeg", "jpg", "JPEG", 1, 1)


@pytest.fixture
def watched() -> WatchedSources:
    return WatchedSources()


async def test_a_source_waiting_out_a_retry_backoff_is_not_kept_in_memory(watched, monkeypatch):
    url = "http://img/1.jpg"
    pipeline = pipeline_with(watched, FailingPool(watched, {url: transient("pool_broken")}))
    alive_during_backoff: list[bool] = []
    real_sleep = asyncio.sleep

    async def backoff(delay: float) -> None:
        if delay > 0:  # the retry's backoff, not a scheduling yield
            alive_during_backoff.append(watched.alive(url))
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", backoff)
    job = asyncio.create_task(pipeline.process(ImageJob(1, (url,))))
    await settled()
    monkeypatch.undo()
    assert alive_during_backoff == [False]
    job.cancel()


async def test_a_permanently_failed_source_is_not_kept_until_its_job_ends(watched):
    rejected, slow = "http://img/bad.jpg", "http://img/slow.jpg"
    pool = FailingPool(watched, {rejected: permanent("corrupt", "truncated JPEG")})
    pipeline = pipeline_with(watched, pool)
    job = asyncio.create_task(pipeline.process(ImageJob(1, (rejected, slow))))
    await settled()
    assert not job.done()  # the slow image still holds the job open
    # Raising through frames makes reference cycles, which the collector frees: what matters
    # is that nothing the job keeps (its results) still reaches the source.
    gc.collect()
    assert not watched.alive(rejected)
    pool.gate.set()
    assert await job == "partial"


@dataclass
class Products:
    """The product's status, and finish_processing's UPDATE … RETURNING."""

    status: str | None = "pending"

    async def fetchval(self, sql: str, product_id: int) -> str | None:
        return self.status

    async def fetchrow(
        self, sql: str, product_id: int, images: Sequence[str], status: str, errors: str
    ) -> dict[str, Any]:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        return {
            "id": product_id,
            "user_id": 1,
            "product_name": "Lamp",
            "product_description": "",
            "product_images": ["http://img/1.jpg"],
            "compressed_product_images": images,
            "product_price": Decimal("9.50"),
            "processing_status": status,
            "processing_errors": errors,
            "created_at": now,
            "updated_at": now,
        }


@dataclass
class FlakyCache:
    """put_fresh_or_raise fails (Redis failed) for the first `failures` calls."""

    failures: int
    calls: int = 0
    stored: bytes | None = None

    async def put_fresh_or_raise(self, product_id: int, body: bytes) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("Redis is down")
        self.stored = body


@dataclass
class Finishing:
    """A pipeline whose images all succeed, over a product and a cache the test can watch."""

    pipeline: Pipeline
    products: Products
    sources: Sources


def finishing_pipeline(cache: FlakyCache, products: Products | None = None) -> Finishing:
    sources = Sources()
    pool = GatedPool(sources)
    pool.gate.set()
    products = products or Products()
    settings = load_settings({}, dotenv=None).replace(image_retry_base_seconds=0.0)  # no waits
    pipeline = pipeline_with(sources, pool, settings=settings, db=products, cache=cache)
    return Finishing(pipeline, products, sources)


async def test_a_failed_cache_refresh_is_retried_so_the_old_value_does_not_linger():
    cache = FlakyCache(failures=2)
    pipeline = finishing_pipeline(cache).pipeline

    assert await pipeline.process(ImageJob(5, ("http://img/1.jpg",))) == "done"

    assert cache.calls == 3
    assert cache.stored is not None
    assert b'"processing_status":"done"' in cache.stored


async def test_a_redis_that_stays_down_does_not_fail_a_processed_job(caplog):
    cache = FlakyCache(failures=100)
    pipeline = finishing_pipeline(cache).pipeline

    assert await pipeline.process(ImageJob(5, ("http://img/1.jpg",))) == "done"

    assert cache.calls == pipeline.settings.image_max_attempts
    assert [r.getMessage() for r in caplog.records].count("cache.refresh_failed") == 1


@pytest.mark.parametrize("status", ["done", "partial", "failed", None])
async def test_a_redelivered_job_of_a_finished_product_is_skipped_not_redone(status):
    """Commits trail the slowest job, so restarts hand finished jobs out again; redoing one
    could turn a done product failed if a source URL has expired since."""
    cache = FlakyCache(failures=0)
    finishing = finishing_pipeline(cache)
    finishing.products.status = status

    assert await finishing.pipeline.process(ImageJob(5, ("http://img/1.jpg",))) == (
        status or "missing"
    )

    assert finishing.sources.fetched == 0
    assert cache.calls == 0


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


def images_counted(pipeline: Pipeline, outcome: str) -> float:
    return pipeline.metrics.images.labels(outcome)._value.get()


@pytest.mark.parametrize(
    ("error", "logged", "level"),
    [
        (transient("pool_broken"), "image.failed", logging.WARNING),
        (KeyError("width"), "image.unexpected_error", logging.ERROR),
    ],
)
async def test_an_error_of_no_known_kind_is_retried_and_logged_as_unexpected(
    watched, caplog, error, logged, level
):
    url = "http://img/1.jpg"
    pool = FailingPool(watched, {url: error})
    pool.gate.set()
    settings = load_settings({}, dotenv=None).replace(image_retry_base_seconds=0.0)
    pipeline = pipeline_with(watched, pool, settings=settings, db=Products())

    assert await pipeline.process(ImageJob(1, (url,))) == "done"  # the second attempt

    (record,) = events(caplog, logged)
    assert record.levelno == level
    assert record.attempt == 1
    assert (record.exc_info is not None) == (level == logging.ERROR)  # a bug's traceback
    other = "image.failed" if logged == "image.unexpected_error" else "image.unexpected_error"
    assert events(caplog, other) == []
    assert images_counted(pipeline, "failed_transient") == 1


class UnreachableOnce(Products):
    """The status query fails once, as a dropped connection does."""

    failed = False

    async def fetchval(self, sql: str, product_id: int) -> str | None:
        if not self.failed:
            self.failed = True
            raise ConnectionResetError("connection reset by peer")
        return await super().fetchval(sql, product_id)


async def test_a_database_step_retries_under_its_own_name_without_image_metrics(caplog):
    pipeline = finishing_pipeline(FlakyCache(failures=0), UnreachableOnce()).pipeline

    assert await pipeline.process(ImageJob(5, ("http://img/1.jpg",))) == "done"

    (retried,) = events(caplog, "job.load.retry")
    assert retried.product_id == 5
    assert "ConnectionResetError" in retried.error
    assert events(caplog, "image.failed") == []
    assert images_counted(pipeline, "failed_transient") == 0
    assert images_counted(pipeline, "failed") == 0
    assert images_counted(pipeline, "done") == 1
