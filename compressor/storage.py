"""Where compressed images go: local files (served by the API) or S3 / any S3-compatible store.

Keys are content-addressed (`products/{id}/{sha256}.{ext}`), so a retried or redelivered job
writes the same key and never leaves duplicates.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Self
from urllib.parse import urlsplit

import aiofiles
import aiofiles.os

from catalogue.images import CACHE_CONTROL
from config import Settings


def public_url(base_url: str, key: str) -> str:
    """The base and the key joined by exactly one '/'."""
    return f"{base_url.rstrip('/')}/{key.lstrip('/')}"


class Storage(Protocol):
    """Used as `async with create_storage(...) as storage`: closed on the way out."""

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        """Stores the object and returns the key it is public under."""

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class _ClosedOnExit:
    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class LocalStorage(_ClosedOnExit):
    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self.root / key
        if await aiofiles.os.path.exists(path):
            return key  # same key, same bytes: a redelivered job has nothing to do
        await aiofiles.os.makedirs(path.parent, exist_ok=True)
        # Write under a temporary name, then rename: readers never see half a file.
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            async with aiofiles.open(temp, "wb") as file:
                await file.write(data)
            await aiofiles.os.replace(temp, path)
        except BaseException:
            if await aiofiles.os.path.exists(temp):
                await aiofiles.os.remove(temp)
            raise
        return key


class S3Storage(_ClosedOnExit):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, threads: int) -> None:
        import boto3  # imported here: local storage needs none of boto3's start-up cost
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # boto3 clients are thread-safe; uploads run in a bounded pool off the event loop.
        # One HTTP connection per upload thread: botocore's default pool of 10 is below the
        # default --upload-concurrency of 16, and the extra uploads would reconnect every time.
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(max_pool_connections=threads, retries={"mode": "standard"}),
        )
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3-upload")

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        object_key = self._object_key(key)
        await asyncio.get_running_loop().run_in_executor(
            self.executor,
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=object_key,
                Body=data,
                ContentType=content_type,
                CacheControl=CACHE_CONTROL,
            ),
        )
        return object_key

    async def close(self) -> None:
        # Off the event loop: shutdown(wait=True) blocks until running uploads end.
        await asyncio.to_thread(self.executor.shutdown, wait=True)


def create_storage(settings: Settings, *, threads: int) -> Storage:
    url = settings.image_storage_url
    if url.startswith("s3://"):
        parts = urlsplit(url)
        return S3Storage(parts.netloc, parts.path, settings.s3_endpoint_url, threads)
    root = settings.local_storage_path
    os.makedirs(root, exist_ok=True)
    return LocalStorage(root)
