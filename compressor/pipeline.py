"""One job, one product: download → compress → upload every image, then one database update.

Each stage has its own concurrency bound (the CLI's --download-concurrency, --processes,
--upload-concurrency): images of many jobs flow through the stages at once, waiting in the
stage's queue when it is full, so downloads and uploads overlap the CPU-bound compression.
A download hands its slot over only when compression takes the image, so the raw images in
memory stay within the download and compress slots (measured on the pipeline benchmark, clocked
from the first POST: peak RSS 510 → 395 MiB, supervisor CPU -30 %, pipeline/compress-only
0.77 → 0.83-0.88). Failed attempts keep nothing of theirs: see _retrying and _image.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from catalogue.cache import ProductCache
from catalogue.images import image_key
from catalogue.jobs import ImageJob
from catalogue.product_json import render_product
from compressor.compress import CompressOptions
from compressor.download import Downloader
from compressor.errors import ImageFailure, backoff_s, classify
from compressor.metrics import WorkerMetrics
from compressor.pool import CompressionPool
from compressor.storage import Storage, public_url
from config import Settings
from db import products

log = logging.getLogger("compressor")
T = TypeVar("T")


class JobExhausted(Exception):
    """A transient failure outlived its attempts: the job goes to the dead-letter topic."""

    def __init__(self, failure: ImageFailure, attempts: int, image: str | None = None) -> None:
        super().__init__(f"{failure} (after {attempts} attempts)")
        self.failure = failure
        self.attempts = attempts
        self.image = image


@dataclass(frozen=True, slots=True)
class ImageResult:
    source: str
    url: str | None = None
    failure: ImageFailure | None = None


class Stage:
    """A concurrency bound with the depth of its queue, for metrics."""

    def __init__(self, name: str, slots: int) -> None:
        self.name = name
        self._semaphore = asyncio.Semaphore(slots)
        self.waiting = 0
        self.active = 0

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


def outcome(results: list[ImageResult]) -> str:
    failed = sum(1 for r in results if r.failure is not None)
    if failed == 0:
        return "done"
    return "failed" if failed == len(results) else "partial"


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        downloader: Downloader,
        pool: CompressionPool,
        storage: Storage,
        db: asyncpg.Pool,
        cache: ProductCache,
        metrics: WorkerMetrics,
        download_concurrency: int,
        upload_concurrency: int,
    ) -> None:
        self.settings = settings
        self.downloader = downloader
        self.pool = pool
        self.storage = storage
        self.db = db
        self.cache = cache
        self.metrics = metrics
        self.options = CompressOptions(
            max_dimension=settings.image_max_dimension,
            quality=settings.image_quality,
            output_format=settings.image_output_format,
            max_pixels=settings.image_max_pixels,
        )
        self.stages = {
            "download": Stage("download", download_concurrency),
            # Twice the processes keeps every child busy without piling up raw downloads.
            "compress": Stage("compress", pool.processes * 2),
            "upload": Stage("upload", upload_concurrency),
        }

    async def process(self, job: ImageJob) -> str:
        """Runs the job to its final status; raises JobExhausted when it cannot finish.

        A job whose product is no longer pending is skipped: it is a redelivery (commits trail
        the slowest job of a partition, so a restart or rebalance hands finished jobs out
        again), and running it again could only undo the result, e.g. mark a done product
        failed because a source URL has expired since. Replaying a dead letter reopens its
        product first (`python -m compressor.dlq replay`)."""
        started = time.perf_counter()
        current = await self._job_step(
            lambda: products.processing_status(self.db, job.product_id), "load", job.product_id
        )
        if current != "pending":
            self.metrics.jobs.labels("skipped").inc()
            log.info("job.skipped", extra={"product_id": job.product_id, "status": current})
            return current or "missing"
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._image(job.product_id, u)) for u in job.image_urls]
        results = [t.result() for t in tasks]
        status = outcome(results)
        await self._job_step(
            lambda: self.finish(job.product_id, results, status), "finish", job.product_id
        )
        ms = round((time.perf_counter() - started) * 1000, 1)
        self.metrics.jobs.labels(status).inc()
        log.info("job.done", extra={"product_id": job.product_id, "status": status, "ms": ms})
        return status

    async def finish(self, product_id: int, results: list[ImageResult], status: str) -> None:
        row = await products.finish_processing(
            self.db,
            product_id,
            compressed_images=[r.url for r in results if r.url is not None],
            status=status,
            errors=[
                {"image": r.source, "error": str(r.failure)}
                for r in results
                if r.failure is not None
            ],
        )
        if row is None:
            log.warning("job.product_missing", extra={"product_id": product_id})
            return
        await self._refresh_cache(product_id, render_product(row))

    async def _refresh_cache(self, product_id: int, body: bytes) -> None:
        """Stores the processed product in Redis and tells every API process (plain SET: this is
        the freshest value, and readers only ever SET NX).

        Retried with the jobs' backoff: a Redis blip must not leave the pre-processing value
        cached for its whole TTL. If Redis stays unreachable, the database holds the result and
        the job is done all the same; what is left is a cached copy that may be stale until it
        expires, and that is logged."""

        async def put() -> None:
            if not await self.cache.put_fresh(product_id, body):  # it logged the Redis error
                raise ImageFailure("cache_unavailable", transient=True)

        try:
            await self._retrying(put, step="cache", product_id=product_id)
        except JobExhausted as exhausted:
            log.error(
                "cache.refresh_failed",
                extra={
                    "product_id": product_id,
                    "attempts": exhausted.attempts,
                    "stale_for_at_most_s": self.settings.cache_ttl_seconds,
                },
            )

    async def _job_step(self, call: Callable[[], Awaitable[T]], step: str, product_id: int) -> T:
        """A database step of the whole job, retried; failing for good, it dead-letters the job."""
        try:
            return await self._retrying(call, step=step, product_id=product_id)
        except ImageFailure as failure:  # a database error retrying cannot fix
            raise JobExhausted(failure, 1) from failure

    async def _retrying(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        step: str,
        product_id: int,
        image: str | None = None,
    ) -> T:
        """Runs `call`, retrying transient failures with backoff up to IMAGE_MAX_ATTEMPTS.

        Raises the ImageFailure of a permanent failure, or JobExhausted when attempts run out.
        """
        attempts = self.settings.image_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except Exception as exc:
                # Detached: `failure` outlives this block, and must not keep exc's traceback.
                failure = classify(exc).detached()
                fields = {
                    "product_id": product_id,
                    "step": step,
                    "image": image,
                    "reason": failure.reason,
                    "detail": failure.detail,
                    "transient": failure.transient,
                    "attempt": attempt,
                }
                if image is not None:
                    self.metrics.images.labels(
                        "failed_transient" if failure.transient else "failed"
                    ).inc()
                    log.warning("image.failed", extra=fields)
                if not failure.transient:
                    raise failure from exc
                if attempt == attempts:
                    raise JobExhausted(failure, attempt, image) from exc
                delay = backoff_s(attempt, self.settings.image_retry_base_seconds)
                log.info("job.retry", extra={**fields, "retry_in_s": round(delay, 3)})
            # Outside the except block: leaving it drops the exception and its traceback, and
            # with them the failed attempt's frames and the source image they hold, which would
            # otherwise sit in memory, holding no slot, for the whole backoff.
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _image(self, product_id: int, source: str) -> ImageResult:
        try:
            url = await self._retrying(
                lambda: self._image_once(product_id, source),
                step="image",
                product_id=product_id,
                image=source,
            )
        except ImageFailure as failure:  # permanent: the other images go on
            return ImageResult(source, failure=failure.detached())
        return ImageResult(source, url=url)

    async def _image_once(self, product_id: int, source: str) -> str:
        extra = {"product_id": product_id, "image": source}
        download, compress = self.stages["download"], self.stages["compress"]
        await download.acquire()
        try:
            with self.metrics.stage_seconds.labels("download").time():
                downloaded = await self.downloader.fetch(source)
            log.info(
                "image.downloaded",
                extra={**extra, "bytes": len(downloaded.data), "ms": round(downloaded.ms, 1)},
            )
            # The download slot is handed over only once compression has room: a finished
            # download waiting for a process still counts against --download-concurrency, so
            # the raw images held in memory never exceed the two stages' slots, however much
            # faster the sources are than the CPUs.
            await compress.acquire()
        finally:
            download.release()
        try:
            started = time.perf_counter()
            with self.metrics.stage_seconds.labels("compress").time():
                image = await self.pool.compress(downloaded.data, self.options)
        finally:
            compress.release()
        log.info(
            "image.compressed",
            extra={
                **extra,
                "in_bytes": len(downloaded.data),
                "out_bytes": len(image.data),
                "width": image.width,
                "height": image.height,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        del downloaded  # the source can be large; drop it before waiting for an upload slot
        key = image_key(product_id, image.data, image.extension)
        async with self.stages["upload"].slot():
            started = time.perf_counter()
            with self.metrics.stage_seconds.labels("upload").time():
                object_key = await self.storage.put(key, image.data, image.content_type)
        url = public_url(self.settings.image_public_base_url, object_key)
        log.info(
            "image.uploaded",
            extra={**extra, "url": url, "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        self.metrics.images.labels("done").inc()
        return url

    async def finish_failed(self, product_id: int, sources: tuple[str, ...], reason: str) -> None:
        """Marks a dead-lettered product failed, naming the reason for each image."""
        failure = ImageFailure("dead_lettered", transient=False, detail=reason)
        await self.finish(product_id, [ImageResult(s, failure=failure) for s in sources], "failed")
