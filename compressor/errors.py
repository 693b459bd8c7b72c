"""Failure classification: transient failures are retried with backoff, permanent ones fail
the image at once with their reason recorded."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures.process import BrokenProcessPool

import aiohttp
import asyncpg
import botocore.exceptions
from redis.exceptions import RedisError

from compressor.compress import ImageRejected


class ImageFailure(Exception):
    """One image failed; `transient` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, transient: bool, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.transient = transient
        self.detail = detail

    def detached(self) -> ImageFailure:
        """The same failure without traceback or cause, to keep: a raised one holds the frames
        it passed through, and with them the source image they were working on."""
        return ImageFailure(self.reason, transient=self.transient, detail=self.detail)


def permanent(reason: str, detail: str = "") -> ImageFailure:
    return ImageFailure(reason, transient=False, detail=detail)


def transient(reason: str, detail: str = "") -> ImageFailure:
    return ImageFailure(reason, transient=True, detail=detail)


def http_status_failure(status: int) -> ImageFailure:
    """5xx and 429 may pass; any other 4xx (or odd status) will not."""
    if status >= 500 or status == 429:
        return transient("http_status", f"HTTP {status}")
    return permanent("http_status", f"HTTP {status}")


_TRANSIENT_TYPES = (
    asyncio.TimeoutError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    ConnectionError,
    OSError,
    BrokenProcessPool,
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
    if isinstance(exc, _TRANSIENT_TYPES):
        return transient(type(exc).__name__, str(exc)[:200])
    # Unknown errors are bugs or surprises: retrying is cheap, losing the image is not.
    return transient(type(exc).__name__, str(exc)[:200])


def backoff_s(attempt: int, base_s: float, *, cap_s: float = 60.0) -> float:
    """Exponential backoff with full jitter after `attempt` failed tries (1-based)."""
    return random.uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))
