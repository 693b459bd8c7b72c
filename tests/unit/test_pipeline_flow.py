"""How images flow through the worker's stages, with in-memory stand-ins for the network, the
process pool, the storage and the database (the real ones are in tests/integration)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
import orjson
import pytest

from catalogue import image_state
from catalogue.events import PROCESSED, Event, decode_event
from catalogue.fingerprint import settings_fingerprint
from catalogue.jobs import DeleteObjects, ImageJob, decode_job
from compressor.claims import KeyClaims
from compressor.cleanup import ObjectCleanup
from compressor.download import Downloaded
from compressor.errors import JobExhausted, permanent, transient
from compressor.metrics import WorkerMetrics
from compressor.pipeline import Compressor, Fetcher, Pipeline, job_retry_policy
from compressor.renditions import RenderedImage, Rendition, RenditionOptions
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


def one_rendition(data: bytes) -> RenderedImage:
    return RenderedImage(
        (Rendition(data, 1, 1, "jpeg", "image/jpeg", "jpg"),), "JPEG", 1, 1, (1, 1)
    )


@dataclass
class GatedPool:
    """Compresses only while the gate is open, like CPUs slower than the sources."""

    sources: Sources
    processes: int = 1
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def compress(self, data: bytes, options: RenditionOptions) -> RenderedImage:
        await self.gate.wait()
        self.sources.held -= 1
        return one_rendition(data[:10])


@dataclass
class Storage:
    """Stores nothing; remembers what was put and deleted."""

    put_keys: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        self.put_keys.append(key)
        return key

    async def delete(self, key: str) -> None:
        self.deleted.append(key)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Products:
    """The products table and the outbox in memory, behind the few statements the worker runs
    (db.products' image_entries, lock_images and save_images; db.outbox's insert), one
    connection's worth: the real ones are in tests/integration."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    outbox: list[tuple[str, str, str]] = field(default_factory=list)
    # Runs once, at the job's write, before the row is locked: a change landing meanwhile.
    before_write: Callable[[Products], None] | None = None
    # When set, the row's lock waits for it: a write that takes its time.
    write_gate: asyncio.Event | None = None

    def add(self, product_id: int, sources: tuple[str, ...], revision: int = 1) -> None:
        self.rows[product_id] = {
            "images": image_state.new_entries(sources, revision),
            "images_revision": revision,
            "version": 1,
        }

    def entries(self, product_id: int) -> list[dict[str, Any]]:
        return self.rows[product_id]["images"]

    def row(self, product_id: int) -> dict[str, Any]:
        stored = self.rows[product_id]
        return {
            "id": product_id,
            "user_id": 1,
            "product_name": "Lamp",
            "product_description": "",
            "product_price": Decimal("9.50"),
            "images": orjson.dumps(stored["images"]).decode(),
            "images_revision": stored["images_revision"],
            "version": stored["version"],
            "created_at": NOW,
            "updated_at": NOW,
        }

    # -- the statements ---------------------------------------------------------------------

    async def fetchval(self, sql: str, product_id: int) -> str | None:
        assert sql.startswith("SELECT images::text FROM products")
        stored = self.rows.get(product_id)
        return None if stored is None else orjson.dumps(stored["images"]).decode()

    async def fetchrow(self, sql: str, product_id: int, *args: Any) -> dict[str, Any] | None:
        if sql.startswith("SELECT") and "FOR UPDATE" not in sql:  # get_product
            return self.row(product_id) if product_id in self.rows else None
        if "FOR UPDATE" in sql:
            if self.write_gate is not None:
                await self.write_gate.wait()
            if self.before_write is not None:
                change, self.before_write = self.before_write, None
                change(self)
            stored = self.rows.get(product_id)
            if stored is None:
                return None
            images = orjson.dumps(stored["images"]).decode()
            return {"images": images, "images_revision": stored["images_revision"]}
        assert sql.lstrip().startswith("UPDATE products")
        images, _sources, _status, revision = args
        stored = self.rows[product_id]
        stored.update(
            images=orjson.loads(images), images_revision=revision, version=stored["version"] + 1
        )
        return self.row(product_id)

    async def execute(self, sql: str, *args: str | None) -> None:
        assert sql.startswith("INSERT INTO outbox")
        topic, key, payload, _traceparent = args
        self.outbox.append(cast(tuple[str, str, str], (topic, key, payload)))

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Products]:
        yield self

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    def deleted_objects(self) -> list[DeleteObjects]:
        jobs = [decode_job(p.encode()) for t, _k, p in self.outbox if t != EVENTS_TOPIC]
        return [job for job in jobs if isinstance(job, DeleteObjects)]

    def events(self) -> list[Event]:
        return [decode_event(p.encode()) for t, _k, p in self.outbox if t == EVENTS_TOPIC]


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
    db: Products | None = None,
    cache: FlakyCache | None = None,
    jobs: tuple[ImageJob, ...] = (),
) -> Pipeline:
    """A pipeline over in-memory products, each of `jobs` pending for its job."""
    settings = settings or load_settings({}, dotenv=None)
    db = db or Products()
    for job in jobs:
        db.add(job.product_id, job.image_urls, job.revision)
    pool_of = cast(asyncpg.Pool, db)  # the statements the worker makes
    results = ProductResults(
        pool_of,
        cache or FlakyCache(failures=0),
        retry_policy=job_retry_policy(settings),
        cache_ttl_s=settings.cache_ttl_seconds,
        jobs_topic=settings.kafka_jobs_topic,
        events_topic=settings.kafka_events_topic,
    )
    storage = Storage()
    cleanup = ObjectCleanup(
        pool_of, storage, KeyClaims(), WorkerMetrics(), retry_policy=job_retry_policy(settings)
    )
    return Pipeline(
        settings=settings,
        downloader=downloader,
        pool=pool,
        storage=storage,
        results=results,
        cleanup=cleanup,
        metrics=WorkerMetrics(),
        download_concurrency=download_concurrency,
        upload_concurrency=2,
    )


def products_of(pipeline: Pipeline) -> Products:
    return cast(Products, pipeline.results.db)


def storage_of(pipeline: Pipeline) -> Storage:
    return cast(Storage, pipeline.storage)


async def test_raw_images_held_never_exceed_the_download_and_compress_slots():
    sources = Sources()
    pool = GatedPool(sources)
    download_concurrency = 3
    compress_slots = 2 * pool.processes
    jobs = tuple(
        ImageJob(n, tuple(f"http://img/{n}/{i}.jpg" for i in range(10))) for n in range(1, 4)
    )
    pipeline = pipeline_with(sources, pool, download_concurrency, jobs=jobs)
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
    """Fails the images named in `fail` with the given failure; holds the others at the gate.
    Each output's bytes are its source's URL, so each source gets a key of its own."""

    sources: WatchedSources
    fail: dict[str, Exception]
    processes: int = 1
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def compress(self, data: object, options: RenditionOptions) -> RenderedImage:
        url = next(u for u, ref in self.sources.sources.items() if ref() is data)
        if url in self.fail:
            raise self.fail.pop(url)  # no local name: a frame holding its own exception is a cycle
        await self.gate.wait()
        return one_rendition(url.encode())


@pytest.fixture
def watched() -> WatchedSources:
    return WatchedSources()


async def test_a_source_waiting_out_a_retry_backoff_is_not_kept_in_memory(watched, monkeypatch):
    url = "http://img/1.jpg"
    job = ImageJob(1, (url,))
    pool = FailingPool(watched, {url: transient("pool_broken")})
    pipeline = pipeline_with(watched, pool, jobs=(job,))
    alive_during_backoff: list[bool] = []
    real_sleep = asyncio.sleep

    async def backoff(delay: float) -> None:
        if delay > 0:  # the retry's backoff, not a scheduling yield
            alive_during_backoff.append(watched.alive(url))
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", backoff)
    running = asyncio.create_task(pipeline.process(job))
    await settled()
    monkeypatch.undo()
    assert alive_during_backoff == [False]
    running.cancel()


async def test_a_permanently_failed_source_is_not_kept_until_its_job_ends(watched):
    rejected, slow = "http://img/bad.jpg", "http://img/slow.jpg"
    job = ImageJob(1, (rejected, slow))
    pool = FailingPool(watched, {rejected: permanent("corrupt", "truncated JPEG")})
    pipeline = pipeline_with(watched, pool, jobs=(job,))
    running = asyncio.create_task(pipeline.process(job))
    await settled()
    assert not running.done()  # the slow image still holds the job open
    # Raising through frames makes reference cycles, which the collector frees: what matters
    # is that nothing the job keeps (its results) still reaches the source.
    gc.collect()
    assert not watched.alive(rejected)
    pool.gate.set()
    assert await running == "partial"


@dataclass
class FlakyCache:
    """put_fresh_or_raise fails (Redis failed) for the first `failures` calls."""

    failures: int
    calls: int = 0
    stored: bytes | None = None
    version: int | None = None

    async def put_fresh_or_raise(self, product_id: int, version: int, body: bytes) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("Redis is down")
        self.stored, self.version = body, version
        return True


@dataclass
class Finishing:
    """A pipeline whose images all succeed, over products and a cache the test can watch."""

    pipeline: Pipeline
    products: Products
    sources: Sources
    storage: Storage


JOB = ImageJob(5, ("http://img/1.jpg",))
EVENTS_TOPIC = Settings().kafka_events_topic


def finishing_pipeline(
    cache: FlakyCache, products: Products | None = None, *, jobs: tuple[ImageJob, ...] = (JOB,)
) -> Finishing:
    sources = Sources()
    pool = GatedPool(sources)
    pool.gate.set()
    products = products or Products()
    settings = load_settings({}, dotenv=None).replace(image_retry_base_seconds=0.0)  # no waits
    pipeline = pipeline_with(sources, pool, settings=settings, db=products, cache=cache, jobs=jobs)
    return Finishing(pipeline, products, sources, storage_of(pipeline))


async def test_a_failed_cache_refresh_is_retried_so_the_old_value_does_not_linger():
    cache = FlakyCache(failures=2)
    finishing = finishing_pipeline(cache)

    assert await finishing.pipeline.process(JOB) == "done"

    assert cache.calls == 3
    assert cache.stored is not None
    assert b'"processing_status":"done"' in cache.stored
    assert cache.version == finishing.products.rows[5]["version"] == 2  # the row written


async def test_a_redis_that_stays_down_does_not_fail_a_processed_job(caplog):
    cache = FlakyCache(failures=100)
    pipeline = finishing_pipeline(cache).pipeline

    assert await pipeline.process(JOB) == "done"

    assert cache.calls == pipeline.settings.image_max_attempts
    assert [r.getMessage() for r in caplog.records].count("cache.refresh_failed") == 1


async def test_the_output_lands_with_its_key_and_the_settings_fingerprint():
    finishing = finishing_pipeline(FlakyCache(failures=0))

    assert await finishing.pipeline.process(JOB) == "done"

    (entry,) = finishing.products.entries(5)
    assert entry["status"] == "ready"
    assert entry["key"] == finishing.storage.put_keys[0]
    assert entry["key"].startswith("products/5/")
    assert entry["url"].endswith(entry["key"])
    assert entry["fingerprint"] == settings_fingerprint(finishing.pipeline.settings)
    assert finishing.storage.deleted == []


def finished(products: Products, product_id: int, status: str) -> None:
    """The product's entries as a job leaves them: ready, or failed with an error."""
    for entry in products.entries(product_id):
        entry.update(status=status, error="HTTP 404" if status == "failed" else None)
        if status == "ready":
            entry.update(url="http://cdn.test/k.jpg", key="products/5/k.jpg")


@pytest.mark.parametrize("status", ["ready", "failed", None])
async def test_a_redelivered_job_none_of_whose_entries_is_pending_is_skipped(status):
    """Commits trail the slowest job, so restarts hand finished jobs out again; redoing one
    could turn a done image failed if a source URL has expired since."""
    cache = FlakyCache(failures=0)
    finishing = finishing_pipeline(cache)
    if status is None:
        del finishing.products.rows[5]
    else:
        finished(finishing.products, 5, status)

    assert await finishing.pipeline.process(JOB) == ("missing" if status is None else "skipped")

    assert finishing.sources.fetched == 0
    # The cached copy is refreshed from the row (over an older version only): the first
    # delivery's write may have landed without its refresh (killed or revoked in between).
    assert cache.calls == (0 if status is None else 1)
    if status is not None:
        assert cache.version == finishing.products.rows[5]["version"]


async def test_a_job_killed_between_its_write_and_its_cache_refresh_is_refreshed_on_redelivery():
    """Found by the soak: a rolling restart revoked a partition while its job was between its
    database write and its cache refresh; the redelivery was skipped (nothing pending) and the
    cache kept the product as pending until its TTL."""
    cache = FlakyCache(failures=0)
    finishing = finishing_pipeline(cache)
    finished(finishing.products, 5, "ready")  # the first delivery's write, and no refresh

    assert await finishing.pipeline.process(JOB) == "skipped"

    assert cache.stored is not None
    assert b'"processing_status":"done"' in cache.stored


async def test_a_job_of_an_older_revision_is_skipped_without_a_download():
    cache = FlakyCache(failures=0)
    finishing = finishing_pipeline(cache, jobs=(ImageJob(5, JOB.image_urls, revision=2),))

    assert await finishing.pipeline.process(JOB) == "skipped"  # JOB is revision 1

    assert finishing.sources.fetched == 0


async def test_only_the_sources_still_waiting_for_the_job_are_processed():
    job = ImageJob(5, ("http://img/kept.jpg", "http://img/removed.jpg"))
    finishing = finishing_pipeline(FlakyCache(failures=0), jobs=(job,))
    # The product's images changed since: one source removed, another added at revision 2.
    products = finishing.products
    change = image_state.change_sources(products.entries(5), ["http://img/kept.jpg", "new"], 2)
    products.rows[5].update(images=change.entries, images_revision=2)

    assert await finishing.pipeline.process(job) == "done"

    assert finishing.sources.fetched == 1
    assert [e["status"] for e in products.entries(5)] == ["ready", "pending"]


def change_sources_meanwhile(products: Products) -> None:
    change = image_state.change_sources(products.entries(5), ["http://img/other.jpg"], 2)
    products.rows[5].update(images=change.entries, images_revision=2, version=2)


def delete_meanwhile(products: Products) -> None:
    del products.rows[5]


@pytest.mark.parametrize("meanwhile", [change_sources_meanwhile, delete_meanwhile])
async def test_a_job_the_product_outgrew_while_it_ran_writes_nothing_and_discards_uploads(
    meanwhile, caplog
):
    caplog.set_level(logging.INFO, logger="compressor")
    cache = FlakyCache(failures=0)
    finishing = finishing_pipeline(cache)
    products = finishing.products
    products.before_write = meanwhile

    assert await finishing.pipeline.process(JOB) == "superseded"

    if 5 in products.rows:
        assert products.rows[5]["version"] == 2  # the change's, not one more
        assert products.entries(5)[0]["source"] == "http://img/other.jpg"
        assert products.entries(5)[0]["status"] == "pending"
    assert cache.calls == 0
    assert products.outbox == []
    assert finishing.storage.put_keys  # it did upload…
    assert finishing.storage.deleted == finishing.storage.put_keys  # …and took it back
    (superseded,) = events(caplog, "job.superseded")
    assert (superseded.uploaded, superseded.discarded) == (1, 1)


async def test_an_upload_an_entry_references_again_is_not_discarded():
    """Content-addressed keys: the superseded job's bytes are what an entry shows already."""
    finishing = finishing_pipeline(FlakyCache(failures=0))
    products = finishing.products

    def reprocessed_meanwhile(products: Products) -> None:
        # The output the job is about to upload is shown already, and a newer job is queued.
        (key,) = finishing.storage.put_keys
        entry = {**products.entries(5)[0], "url": "u", "key": key}
        change = image_state.reprocess([entry], 2)
        products.rows[5].update(images=change.entries, images_revision=2)

    products.before_write = reprocessed_meanwhile

    assert await finishing.pipeline.process(JOB) == "superseded"

    assert finishing.storage.deleted == []


async def test_the_write_that_ends_processing_carries_its_processed_event():
    finishing = finishing_pipeline(FlakyCache(failures=0), jobs=())
    products = finishing.products
    products.add(5, JOB.image_urls)

    assert await finishing.pipeline.process(JOB) == "done"

    (event,) = products.events()
    assert (event.type, event.product_id) == (PROCESSED, 5)
    data = orjson.loads(event.data)
    assert data["processing_status"] == "done"
    assert data["compressed_product_images"] == [products.entries(5)[0]["url"]]


async def test_a_reprocess_result_hands_the_replaced_output_to_a_clean_up_job():
    job = ImageJob(5, JOB.image_urls, revision=2)
    finishing = finishing_pipeline(FlakyCache(failures=0), jobs=())
    products = finishing.products
    products.add(5, JOB.image_urls)
    old = {**products.entries(5)[0], "status": "ready", "url": "u/old", "key": "products/5/old.jpg"}
    reprocessed = image_state.reprocess([old], 2)
    products.rows[5].update(images=reprocessed.entries, images_revision=2)

    assert await finishing.pipeline.process(job) == "done"

    (cleanup,) = products.deleted_objects()
    assert cleanup == DeleteObjects(5, ("products/5/old.jpg",))
    topic, key, _ = products.outbox[0]
    assert (topic, key) == (finishing.pipeline.settings.kafka_jobs_topic, "5")
    assert finishing.storage.deleted == []  # not here: the clean-up job deletes it


async def test_the_uploads_of_a_job_that_cannot_finish_are_discarded(watched):
    good, flaky = "http://img/good.jpg", "http://img/flaky.jpg"
    job = ImageJob(1, (good, flaky))
    settings = load_settings({}, dotenv=None).replace(
        image_retry_base_seconds=0.0, image_max_attempts=1
    )
    pool = FailingPool(watched, {flaky: transient("pool_broken")})
    pool.gate.set()
    pipeline = pipeline_with(watched, pool, settings=settings, jobs=(job,))

    with pytest.raises(ExceptionGroup) as raised:
        await pipeline.process(job)

    assert raised.group_contains(JobExhausted)
    storage = storage_of(pipeline)
    assert storage.put_keys
    assert storage.deleted == storage.put_keys
    assert products_of(pipeline).entries(1)[0]["status"] == "pending"  # the dead letter's


async def test_a_job_cancelled_before_its_write_holds_none_of_its_keys_any_more():
    """A revoked partition's jobs are cancelled: their uploads must not stay held, or no
    clean-up of this process would ever delete those keys."""
    finishing = finishing_pipeline(FlakyCache(failures=0))
    finishing.products.write_gate = asyncio.Event()
    claims = finishing.pipeline.cleanup.claims
    running = asyncio.create_task(finishing.pipeline.process(JOB))
    await settled()
    (key,) = finishing.storage.put_keys
    assert claims.held(key)  # uploaded, the write not done

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert not claims.held(key)


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
    job = ImageJob(1, (url,))
    pool = FailingPool(watched, {url: error})
    pool.gate.set()
    settings = load_settings({}, dotenv=None).replace(image_retry_base_seconds=0.0)
    pipeline = pipeline_with(watched, pool, settings=settings, jobs=(job,))

    assert await pipeline.process(job) == "done"  # the second attempt

    (record,) = events(caplog, logged)
    assert record.levelno == level
    assert record.attempt == 1
    assert (record.exc_info is not None) == (level == logging.ERROR)  # a bug's traceback
    other = "image.failed" if logged == "image.unexpected_error" else "image.unexpected_error"
    assert events(caplog, other) == []
    assert images_counted(pipeline, "failed_transient") == 1


class UnreachableOnce(Products):
    """The entries query fails once, as a dropped connection does."""

    failed = False

    async def fetchval(self, sql: str, product_id: int) -> str | None:
        if not self.failed:
            self.failed = True
            raise ConnectionResetError("connection reset by peer")
        return await super().fetchval(sql, product_id)


async def test_a_database_step_retries_under_its_own_name_without_image_metrics(caplog):
    pipeline = finishing_pipeline(FlakyCache(failures=0), UnreachableOnce()).pipeline

    assert await pipeline.process(JOB) == "done"

    (retried,) = events(caplog, "job.load.retry")
    assert retried.product_id == 5
    assert "ConnectionResetError" in retried.error
    assert events(caplog, "image.failed") == []
    assert images_counted(pipeline, "failed_transient") == 0
    assert images_counted(pipeline, "failed") == 0
    assert images_counted(pipeline, "done") == 1


@dataclass
class LadderPool:
    """Renders a small ladder in two formats, each output's bytes naming it."""

    processes: int = 1

    async def compress(self, data: bytes, options: RenditionOptions) -> RenderedImage:
        return RenderedImage(
            tuple(
                Rendition(f"{fmt}{width}".encode(), width, width // 2, fmt, f"image/{fmt}", ext)
                for fmt, ext in (("webp", "webp"), ("jpeg", "jpg"))
                for width in (320, 640)
            ),
            "JPEG",
            4000,
            2000,
            (2000, 4000),  # stored on its side, shown upright
        )


async def test_every_rendition_is_stored_and_recorded_and_the_largest_jpeg_is_shown():
    sources = Sources()
    pipeline = pipeline_with(sources, LadderPool(), jobs=(JOB,))

    assert await pipeline.process(JOB) == "done"

    (entry,) = products_of(pipeline).entries(5)
    stored = storage_of(pipeline).put_keys
    assert len(stored) == len(set(stored)) == 4
    assert sorted(r["key"] for r in entry["renditions"]) == sorted(stored)
    assert [(r["format"], r["width"], r["height"], r["bytes"]) for r in entry["renditions"]] == [
        ("webp", 320, 160, 7),
        ("webp", 640, 320, 7),
        ("jpeg", 320, 160, 7),
        ("jpeg", 640, 320, 7),
    ]
    largest_jpeg = entry["renditions"][-1]
    assert (entry["key"], entry["url"]) == (largest_jpeg["key"], largest_jpeg["url"])
    # The source beside them, upright: what the console measures the savings against.
    assert entry["original"] == {"bytes": len(RAW), "width": 2000, "height": 4000, "format": "jpeg"}
    assert all(
        r["key"].endswith("." + ("jpg" if r["format"] == "jpeg" else "webp"))
        for r in entry["renditions"]
    )
