"""One job, one product: download → compress → upload every image, then one database write.

Only the job's sources still waiting for it are processed (pending at its revision), and the
write lands only on those (compressor.results): a job that the product outgrew meanwhile writes
nothing, and what it uploaded is discarded (compressor.cleanup), as are uploads of a job that
failed. Each upload is held (compressor.claims) until the write is over, so no clean-up in this
process deletes an object a job is about to reference.

Each stage has its own concurrency bound (the CLI's --download-concurrency, --processes,
--upload-concurrency): images of many jobs flow through the stages at once, waiting in the
stage's queue when it is full, so downloads and uploads overlap the CPU-bound compression.
A download hands its slot over only when compression takes the image, so the raw images in
memory stay within the download and compress slots (measured on the pipeline benchmark, clocked
from the first POST: peak RSS 510 → 395 MiB, supervisor CPU -30 %, pipeline/compress-only
0.77 → 0.83-0.88). Failed attempts keep nothing of theirs: see catalogue.retry and _image.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol, TypeVar

from catalogue import spans
from catalogue.fingerprint import settings_fingerprint
from catalogue.images import image_key
from catalogue.jobs import ImageJob
from catalogue.retry import RetriesExhausted, RetryPolicy, retry
from compressor.claims import JobUploads
from compressor.cleanup import ObjectCleanup
from compressor.download import Downloaded
from compressor.errors import JobExhausted, classify
from compressor.metrics import WorkerMetrics
from compressor.renditions import RenderedImage, Rendition, RenditionOptions, output_format
from compressor.results import SUPERSEDED, ImageResult, ProductResults, Recorded, outcome
from compressor.stages import Stage
from compressor.storage import public_url
from config import Settings
from config.logging import current_traceparent

log = logging.getLogger("compressor")
T = TypeVar("T")
# The cap of the backoff between attempts, whatever IMAGE_RETRY_BASE_SECONDS says.
RETRY_CAP_S = 60.0


def job_retry_policy(settings: Settings) -> RetryPolicy:
    """IMAGE_MAX_ATTEMPTS tries, full-jitter exponential from IMAGE_RETRY_BASE_SECONDS: the
    images' attempts, and the job's database and cache steps."""
    return RetryPolicy(
        # A base over the cap waits as the cap does: min(cap, base·2^n) is the cap either way.
        base_s=min(settings.image_retry_base_seconds, RETRY_CAP_S),
        cap_s=RETRY_CAP_S,
        max_attempts=settings.image_max_attempts,
    )


def rendition_options(settings: Settings) -> RenditionOptions:
    """What the image settings ask of each source."""
    return RenditionOptions(
        sizes=settings.image_rendition_sizes,
        formats=tuple(output_format(name) for name in settings.image_output_formats),
        quality_jpeg=settings.image_quality_jpeg,
        quality_webp=settings.image_quality_webp,
        quality_avif=settings.image_quality_avif,
        avif_speed=settings.image_avif_speed,
        max_pixels=settings.image_max_pixels,
    )


class Fetcher(Protocol):
    async def fetch(self, url: str) -> Downloaded: ...


class Compressor(Protocol):
    processes: int

    async def compress(self, data: bytes, options: RenditionOptions) -> RenderedImage: ...


class Store(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> str: ...


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        downloader: Fetcher,
        pool: Compressor,
        storage: Store,
        results: ProductResults,
        cleanup: ObjectCleanup,
        metrics: WorkerMetrics,
        download_concurrency: int,
        upload_concurrency: int,
    ) -> None:
        self.settings = settings
        self.downloader = downloader
        self.pool = pool
        self.storage = storage
        self.results = results
        self.cleanup = cleanup
        self.metrics = metrics
        self.retry_policy = job_retry_policy(settings)
        # Recorded with every output: `python -m compressor.reprocess --outdated` compares it.
        self.fingerprint = settings_fingerprint(settings)
        self.options = rendition_options(settings)
        self.stages = {
            "download": Stage("download", download_concurrency),
            # Twice the processes keeps every child busy without piling up raw downloads.
            "compress": Stage("compress", pool.processes * 2),
            "upload": Stage("upload", upload_concurrency),
        }

    async def process(self, job: ImageJob) -> str:
        """Runs the job to its end and returns its outcome (done, partial, failed; superseded
        when it came too late to land; skipped or missing); raises JobExhausted when it cannot
        finish.

        A job none of whose sources still waits for it is skipped without a download: it is a
        redelivery (commits trail the slowest job of a partition, so a restart or rebalance
        hands finished jobs out again), or the product changed since it was queued, and running
        it again could only undo a result, e.g. mark a done image failed because its URL has
        expired since. Replaying a dead letter reopens its entries first (`python -m
        compressor.dlq replay`)."""
        started = time.perf_counter()
        product_id = job.product_id
        sources = await self._job_step(lambda: self.results.awaiting(job), "load", product_id)
        if not sources:
            skipped = "missing" if sources is None else "skipped"
            self.metrics.jobs.labels("skipped").inc()
            log.info(
                "job.skipped",
                extra={"product_id": product_id, "revision": job.revision, "reason": skipped},
            )
            return skipped
        results, recorded = await self._run(job, sources)
        status = outcome(results) if recorded.landed else SUPERSEDED
        ms = round((time.perf_counter() - started) * 1000, 1)
        self.metrics.jobs.labels(status).inc()
        extra = {"product_id": product_id, "revision": job.revision, "status": status, "ms": ms}
        if recorded.landed:
            log.info("job.done", extra={**extra, "product_status": recorded.product_status})
        return status

    async def _run(
        self, job: ImageJob, sources: tuple[str, ...]
    ) -> tuple[list[ImageResult], Recorded]:
        """The images, then the write; the job's uploads nothing took are discarded after it,
        those of a job that failed too (what the discard misses, the garbage collection takes)."""
        product_id = job.product_id
        uploads = JobUploads(self.cleanup.claims)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._image(product_id, u, uploads)) for u in sources]
            results = [t.result() for t in tasks]
            recorded = await self._job_step(
                lambda: self.results.record(job, results), "finish", product_id
            )
        except Exception:
            uploads.release()
            await self.cleanup.discard(product_id, uploads.keys, reason="job_failed")
            raise
        finally:
            uploads.release()  # cancelled too (a revoke, a shutdown): once in any case
        reason = "unused" if recorded.landed else SUPERSEDED
        discarded = await self.cleanup.discard(product_id, recorded.unused, reason=reason)
        if deferred := uploads.deferred - recorded.unused:
            # A clean-up came while the job held these (the product deleted, or its images
            # changed, after the write): done now, keeping what the product references.
            await self.cleanup.discard(product_id, deferred, reason="delete_objects")
        if not recorded.landed:
            log.info(
                "job.superseded",
                extra={
                    "product_id": product_id,
                    "revision": job.revision,
                    "uploaded": len(uploads.keys),
                    "discarded": discarded,
                },
            )
        return results, recorded

    async def _job_step(self, call: Callable[[], Awaitable[T]], step: str, product_id: int) -> T:
        """A database step of the whole job (logged as job.<step>.retry), retried on any error;
        failing on every attempt, it dead-letters the job."""
        try:
            return await retry(
                call, self.retry_policy, what=f"job.{step}", log_extra={"product_id": product_id}
            )
        except RetriesExhausted as exhausted:
            gave_up = JobExhausted(classify(exhausted.last).detached(), exhausted.attempts)
        raise gave_up  # outside the except: it carries nothing of the failed attempts

    async def _image(self, product_id: int, source: str, uploads: JobUploads) -> ImageResult:
        """One image, its transient failures retried: its URL, or the permanent failure that the
        job records while its other images go on. Raises JobExhausted when attempts run out."""
        where = {"product_id": product_id, "image": source}

        def failed(error: BaseException, attempt: int) -> None:
            self._image_failed(error, attempt, where)

        def retrying(error: BaseException, attempt: int, delay_s: float) -> None:
            extra = {**where, "attempt": attempt, "retry_in_s": round(delay_s, 3)}
            log.info("image.retry", extra=extra)

        try:
            stored = await retry(
                lambda: self._image_once(product_id, source, uploads),
                self.retry_policy,
                what="image",
                is_transient=lambda error: classify(error).transient,
                on_failure=failed,
                on_retry=retrying,
            )
        except RetriesExhausted as exhausted:
            failure = classify(exhausted.last).detached()
            gave_up = JobExhausted(failure, exhausted.attempts, source)
        except Exception as error:  # permanent: the other images go on
            # Detached: the result outlives this block, and must not keep error's traceback.
            return ImageResult(source, failure=classify(error).detached())
        else:
            url, key = stored.shown
            return ImageResult(
                source,
                url=url,
                key=key,
                fingerprint=self.fingerprint,
                renditions=stored.renditions,
                original=stored.original,
            )
        raise gave_up  # outside the except, as above

    def _image_failed(self, error: BaseException, attempt: int, where: dict[str, object]) -> None:
        failure = classify(error)
        self.metrics.images.labels("failed_transient" if failure.transient else "failed").inc()
        fields = {
            **where,
            "reason": failure.reason,
            "detail": failure.detail,
            "transient": failure.transient,
            "attempt": attempt,
        }
        if failure.unexpected:  # a bug, most likely: retried all the same, but said so
            log.error("image.unexpected_error", extra=fields, exc_info=error)
        else:
            log.warning("image.failed", extra=fields)

    async def _image_once(self, product_id: int, source: str, uploads: JobUploads) -> Stored:
        image, source_bytes = await self._compressed(product_id, source)
        stored = await self._uploaded(product_id, source, image, uploads)
        return stored._replace(original=_original(image, source_bytes))

    async def _compressed(self, product_id: int, source: str) -> tuple[RenderedImage, int]:
        """Downloads and compresses one image: its renditions, and the source's size in bytes.
        The source is dropped when this returns, before the image waits for an upload slot (a
        source can be large)."""
        extra = {"product_id": product_id, "image": source}
        download, compress = self.stages["download"], self.stages["compress"]
        await download.acquire()
        try:
            with self.metrics.stage_seconds.labels("download").time(), _stage("image.download"):
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
            with self.metrics.stage_seconds.labels("compress").time(), _stage("image.compress"):
                image = await self.pool.compress(downloaded.data, self.options)
        finally:
            compress.release()
        largest = max(image.renditions, key=lambda r: r.width * r.height)
        log.info(
            "image.compressed",
            extra={
                **extra,
                "in_bytes": len(downloaded.data),
                "out_bytes": sum(len(r.data) for r in image.renditions),
                "renditions": len(image.renditions),
                "width": largest.width,
                "height": largest.height,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return image, len(downloaded.data)

    async def _uploaded(
        self, product_id: int, source: str, image: RenderedImage, uploads: JobUploads
    ) -> Stored:
        """Every rendition stored, each under its content-addressed key, at most
        --upload-concurrency objects at a time across all jobs."""
        started = time.perf_counter()
        with _stage("image.upload"):
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._stored(product_id, rendition, uploads))
                    for rendition in image.renditions
                ]
        renditions = tuple(task.result() for task in tasks)
        shown = _shown(renditions)
        log.info(
            "image.uploaded",
            extra={
                "product_id": product_id,
                "image": source,
                "url": shown["url"],
                "objects": len(renditions),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        self.metrics.images.labels("done").inc()
        return Stored((shown["url"], shown["key"]), renditions)

    async def _stored(
        self, product_id: int, rendition: Rendition, uploads: JobUploads
    ) -> dict[str, Any]:
        """One rendition uploaded: the entry's record of it (compressor.results lands it)."""
        key = image_key(product_id, rendition.data, rendition.extension)
        await uploads.hold(key)  # before the upload: no clean-up here takes it from now on
        async with self.stages["upload"].slot():
            with self.metrics.stage_seconds.labels("upload").time():
                object_key = await self.storage.put(key, rendition.data, rendition.content_type)
        return {
            "key": key,
            "url": public_url(self.settings.image_public_base_url, object_key),
            "width": rendition.width,
            "height": rendition.height,
            "format": rendition.format,
            "bytes": len(rendition.data),
        }


def _stage(name: str) -> AbstractContextManager[spans.Note]:
    """One image stage as a step of the job's trace (a span with an exporter)."""
    return spans.step(name, current_traceparent.get())


class Stored(NamedTuple):
    """A source's output in storage: (url, key) of the one its entry shows, every rendition as
    its entry records it, and the source it was made from."""

    shown: tuple[str, str]
    renditions: tuple[dict[str, Any], ...]
    original: dict[str, Any] | None = None


def _original(image: RenderedImage, source_bytes: int) -> dict[str, Any]:
    """The source as its entry records it beside the renditions (catalogue/image_state.py)."""
    width, height = image.source_upright
    return {
        "bytes": source_bytes,
        "width": width,
        "height": height,
        "format": image.source_format.lower(),
    }


def _shown(renditions: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The rendition an entry's url shows (the specification's compressed image): the largest
    JPEG, or without JPEG the largest of the first format made. Renditions come by format, then
    ascending width."""
    jpegs = [r for r in renditions if r["format"] == "jpeg"]
    first = renditions[0]["format"]
    return (jpegs or [r for r in renditions if r["format"] == first])[-1]
