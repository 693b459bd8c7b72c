"""Failure classification: transient failures are retried with backoff, permanent ones fail
the image at once with their reason recorded. Errors of no known kind are bugs or surprises:
retried (cheap) but flagged `unexpected`, so the pipeline logs them as errors, with traceback."""

from __future__ import annotations

import asyncio
from concurrent.futures.process import BrokenProcessPool

import aiohttp
import asyncpg
import botocore.exceptions
from redis.exceptions import RedisError

from compressor.rejected import ImageRejected


class ImageFailure(Exception):
    """One image failed; `transient` says whether another attempt may succeed."""

    def __init__(
        self, reason: str, *, transient: bool, detail: str = "", unexpected: bool = False
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.transient = transient
        self.detail = detail
        self.unexpected = unexpected  # an error of no known kind: most likely a bug

    def detached(self) -> ImageFailure:
        """The same failure without traceback or cause, to keep: a raised one holds the frames
        it passed through, and with them the source image they were working on."""
        return ImageFailure(
            self.reason, transient=self.transient, detail=self.detail, unexpected=self.unexpected
        )


class JobExhausted(Exception):
    """A transient failure outlived its attempts: the job goes to the dead-letter topic."""

    def __init__(self, failure: ImageFailure, attempts: int, image: str | None = None) -> None:
        super().__init__(f"{failure} (after {attempts} attempts)")
        self.failure = failure
        self.attempts = attempts
        self.image = image


def permanent(reason: str, detail: str = "") -> ImageFailure:
    return ImageFailure(reason, transient=False, detail=detail)


def transient(reason: str, detail: str = "") -> ImageFailure:
    return ImageFailure(reason, transient=True, detail=detail)


def http_status_failure(status: int) -> ImageFailure:
    """5xx and 429 may pass; any other 4xx (or odd status) will not."""
    if status >= 500 or status == 429:
        return transient("http_status", f"HTTP {status}")
    return permanent("http_status", f"HTTP {status}")


# The errors of the network, the pool, the database, the store and the cache: another attempt
# may succeed, and nothing about them is surprising.
_TRANSIENT_TYPES = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    OSError,  # ConnectionError among them
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    RedisError,
)


def classify(exc: BaseException) -> ImageFailure:
    """Maps any exception of the pipeline to an ImageFailure."""
    if isinstance(exc, ImageFailure):
        return exc
    if isinstance(exc, ImageRejected):
        return permanent(exc.reason, exc.detail)
    if isinstance(exc, asyncio.TimeoutError):
        return transient("timeout", "no complete answer in time")
    if isinstance(exc, BrokenProcessPool):
        return transient("pool_broken", "a compression process died")
    detail = str(exc)[:200]
    if isinstance(exc, _TRANSIENT_TYPES):
        return transient(type(exc).__name__, detail)
    # Unknown errors are bugs or surprises: retrying is cheap, losing the image is not; but
    # they are flagged, so they are logged as the errors they are, not as a flaky source.
    return ImageFailure(type(exc).__name__, transient=True, detail=detail, unexpected=True)
