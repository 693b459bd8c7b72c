"""Where compressed images go: local files (served by the API) or S3 / any S3-compatible store.

Keys are content-addressed (`products/{id}/{sha256}.{ext}`), so a retried or redelivered job
writes the same key and never leaves duplicates. Besides `put`, a storage deletes (a missing
object is no error: deletions are retried and redelivered), tells one object's size and
modification time (`stat`), and lists every object under `products/` (`list`) for the garbage
collection (compressor/gc.py), which judges an object's age by that modification time: a `put`
of an object that exists already refreshes it, so an upload whose database write is in flight
always looks young.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import aiofiles
import aiofiles.os

from catalogue.images import CACHE_CONTROL
from config import Settings

# Where every object of the catalogue lives (catalogue.images.image_key): what `list` walks, so
# the garbage collection never touches anything else sharing the directory or the bucket.
OBJECTS_PREFIX = "products/"


def public_url(base_url: str, key: str) -> str:
    """The base and the key joined by exactly one '/'."""
    return f"{base_url.rstrip('/')}/{key.lstrip('/')}"


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object in storage: its key (as entries name it, without any S3 prefix), its size and
    its modification time (seconds since the epoch: a file's mtime, S3's LastModified)."""

    key: str
    size: int
    mtime: float


class Storage(Protocol):
    """Used as `async with create_storage(...) as storage`: closed on the way out."""

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        """Stores the object and returns the key it is public under."""

    async def delete(self, key: str) -> None:
        """Removes the object; one that is not there is no error."""

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size and modification time; None if it is not there."""

    def list(self) -> AsyncIterator[StoredObject]:
        """Every object under OBJECTS_PREFIX, in no particular order."""

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

    def _path(self, key: str) -> Path:
        """The file of a key, which must stay under the root (a key comes from a message)."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or path == self.root.resolve():
            raise ValueError(f"key {key!r} is outside the storage root")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self._path(key)
        if await aiofiles.os.path.exists(path):
            # Same key, same bytes: nothing to write. Its mtime is refreshed, so that the
            # garbage collection sees it as the fresh upload it is (compressor/gc.py).
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.utime, path)
                return key
        # Write under a temporary name, then rename: readers never see half a file.
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            await self._write_new(temp, data)
            await aiofiles.os.replace(temp, path)
        except BaseException:
            if await aiofiles.os.path.exists(temp):
                await aiofiles.os.remove(temp)
            raise
        return key

    @staticmethod
    async def _write_new(temp: Path, data: bytes) -> None:
        for attempt in (1, 2):
            await aiofiles.os.makedirs(temp.parent, exist_ok=True)
            try:
                async with aiofiles.open(temp, "wb") as file:
                    await file.write(data)
            except FileNotFoundError:
                # The directory went (a delete emptied it) between the two steps: once more.
                if attempt == 2:
                    raise
            else:
                return

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(_remove_file_and_empty_parent, path, self.root.resolve())

    async def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            info = await aiofiles.os.stat(path)
        except FileNotFoundError:
            return None
        return StoredObject(key, info.st_size, info.st_mtime)

    async def list(self) -> AsyncIterator[StoredObject]:
        directories = [self.root / OBJECTS_PREFIX]
        while directories:
            files, subdirectories = await asyncio.to_thread(_scan, self.root, directories.pop())
            directories.extend(subdirectories)
            for stored in files:
                yield stored


def _scan(root: Path, directory: Path) -> tuple[list[StoredObject], list[Path]]:
    """The files (as objects) and the subdirectories of one directory; none if it is gone."""
    files: list[StoredObject] = []
    subdirectories: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return files, subdirectories
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                key = Path(entry.path).relative_to(root).as_posix()
                files.append(StoredObject(key, info.st_size, info.st_mtime))
        except FileNotFoundError:
            continue  # deleted while listed
    return files, subdirectories


def _remove_file_and_empty_parent(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    # A deleted product's directory goes too once empty; an upload racing this rmdir creates it
    # again (LocalStorage._write_new).
    if path.parent != root and path.parent != root / OBJECTS_PREFIX.rstrip("/"):
        with contextlib.suppress(OSError):
            path.parent.rmdir()


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

    def _key_of(self, object_key: str) -> str:
        return object_key.removeprefix(f"{self.prefix}/") if self.prefix else object_key

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        method = getattr(self.client, operation)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: method(Bucket=self.bucket, **kwargs)
        )

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

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a key that is not there: deleting twice is no error.
        await self._call("delete_object", Key=self._object_key(key))

    async def stat(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = await self._call("head_object", Key=self._object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(key, head["ContentLength"], head["LastModified"].timestamp())

    async def list(self) -> AsyncIterator[StoredObject]:
        pages: dict[str, Any] = {"Prefix": self._object_key(OBJECTS_PREFIX)}
        while True:
            page = await self._call("list_objects_v2", **pages)
            for item in page.get("Contents", ()):
                yield StoredObject(
                    self._key_of(item["Key"]), item["Size"], item["LastModified"].timestamp()
                )
            if not page.get("IsTruncated"):
                return
            pages["ContinuationToken"] = page["NextContinuationToken"]

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
