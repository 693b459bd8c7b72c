"""`python -m compressor.gc [--dry-run] [--grace 1h] [--json]`: deletes stored objects that
nothing references.

Compares what storage holds (every object under `products/`, local files or S3) with what the
database references (every image entry's key, db/storage_refs.py), and deletes the objects
nothing references that are older than the grace period by their modification time in storage
(file mtime, S3 LastModified), so that an upload whose database write is still in flight is never
taken: an upload, even of an object that exists already, refreshes that time. The references are
read first, then the listing; each object is looked at again (`stat`) just before it is deleted,
so one uploaded again meanwhile is kept. Prints the counts and the bytes reclaimed.

One collection runs at a time across the group (a PostgreSQL advisory lock on a connection of
its own); the workers also run it every STORAGE_GC_INTERVAL_SECONDS (compressor/gc_periodic.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from compressor.storage import StoredObject
from db import storage_refs
from db.pool import Connection

log = logging.getLogger("compressor")
DELETE_BATCH = 32  # objects looked at and deleted at once


class Collectable(Protocol):
    async def delete(self, key: str) -> None: ...

    async def stat(self, key: str) -> StoredObject | None: ...

    def list(self) -> AsyncIterator[StoredObject]: ...


@dataclass(slots=True)
class GcReport:
    dry_run: bool
    grace_s: float
    objects: int = 0
    bytes: int = 0
    referenced: int = 0  # kept: an entry references them
    young: int = 0  # kept: younger than the grace period
    in_use: int = 0  # kept: a job of this process is uploading them
    deleted: int = 0  # or, in a dry run, would be
    deleted_bytes: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        failed = f"; {self.failed} failed (next run retries)" if self.failed else ""
        return (
            f"storage gc{' (dry run)' if self.dry_run else ''}: {self.objects} objects, "
            f"{human_bytes(self.bytes)} in storage; kept {self.referenced} referenced, "
            f"{self.young} younger than {human_duration(self.grace_s)}, {self.in_use} in use; "
            f"{verb} {self.deleted} unreferenced ({human_bytes(self.deleted_bytes)} "
            f"{'reclaimable' if self.dry_run else 'reclaimed'}){failed}"
        )


def kept_because(
    stored: StoredObject, referenced: set[str], cutoff: float, held: Callable[[str], bool]
) -> str | None:
    """Why an object stays (referenced, young, in_use), or None: it is garbage."""
    if stored.key in referenced:
        return "referenced"
    if stored.mtime > cutoff:
        return "young"
    if held(stored.key):
        return "in_use"
    return None


async def collect(
    storage: Collectable,
    conn: Connection,
    *,
    grace_s: float,
    dry_run: bool,
    held: Callable[[str], bool] = lambda key: False,
    now: Callable[[], float] = time.time,
) -> GcReport:
    """One collection (see the module); `held` names keys a job of this process is uploading."""
    report = GcReport(dry_run=dry_run, grace_s=grace_s)
    referenced = await storage_refs.referenced_keys(conn)
    cutoff = now() - grace_s
    batch: list[StoredObject] = []
    async for stored in storage.list():
        report.objects += 1
        report.bytes += stored.size
        reason = kept_because(stored, referenced, cutoff, held)
        if reason is not None:
            setattr(report, reason, getattr(report, reason) + 1)
        elif dry_run:
            report.deleted += 1
            report.deleted_bytes += stored.size
        else:
            batch.append(stored)
            if len(batch) >= DELETE_BATCH:
                await _delete_batch(storage, batch, report, cutoff, held)
                batch = []
    if batch:
        await _delete_batch(storage, batch, report, cutoff, held)
    return report


async def _delete_batch(
    storage: Collectable,
    batch: list[StoredObject],
    report: GcReport,
    cutoff: float,
    held: Callable[[str], bool],
) -> None:
    async def delete(listed: StoredObject) -> None:
        try:
            current = await storage.stat(listed.key)  # uploaded again since it was listed?
            if current is None:
                return  # gone meanwhile: nothing to reclaim
            reason = kept_because(current, set(), cutoff, held)
            if reason is not None:
                setattr(report, reason, getattr(report, reason) + 1)
                return
            await storage.delete(listed.key)
        except Exception as exc:
            report.failed += 1
            log.warning("storage_gc.delete_failed", extra={"key": listed.key, "error": repr(exc)})
            return
        report.deleted += 1
        report.deleted_bytes += current.size

    await asyncio.gather(*(delete(listed) for listed in batch))


async def collect_exclusively(
    postgres_url: str,
    storage: Collectable,
    *,
    grace_s: float,
    dry_run: bool,
    held: Callable[[str], bool] = lambda key: False,
) -> GcReport | None:
    """`collect` under the group's lock, on a connection of its own; None when another
    collection holds it. A dry run deletes nothing and needs no lock."""
    conn = await asyncpg.connect(postgres_url, timeout=30)
    try:
        if not dry_run and not await storage_refs.try_gc_lock(conn):
            return None
        try:
            return await collect(storage, conn, grace_s=grace_s, dry_run=dry_run, held=held)
        finally:
            if not dry_run:
                await storage_refs.release_gc_lock(conn)
    finally:
        await conn.close()


# -- durations and sizes, as the command line takes and prints them ----------------------------

_UNITS_S = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*")


def parse_duration(text: str) -> float:
    """`1h`, `30m`, `90s`, `2d`, `0` or plain seconds → seconds."""
    match = _DURATION.fullmatch(text.lower())
    if not match or match[2] not in _UNITS_S:
        raise ValueError(f"{text!r} is not a duration like 1h, 30m, 90s or 0")
    return float(match[1]) * _UNITS_S[match[2]]


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import orjson

    from compressor.storage import create_storage
    from config import load_settings_or_exit

    parser = argparse.ArgumentParser(prog="python -m compressor.gc", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="delete nothing, count only")
    parser.add_argument(
        "--grace",
        type=parse_duration,
        default=3600.0,
        help="keep unreferenced objects younger than this (1h, 30m, 90s, 0; default 1h)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    settings = load_settings_or_exit()

    async def run() -> GcReport | None:
        async with create_storage(settings, threads=DELETE_BATCH) as storage:
            return await collect_exclusively(
                settings.postgres_url, storage, grace_s=args.grace, dry_run=args.dry_run
            )

    report = asyncio.run(run())
    if report is None:
        print(
            "another storage gc is running (its advisory lock is held); nothing done",
            file=sys.stderr,
        )
        return 1
    print(orjson.dumps(report.as_dict()).decode() if args.json else report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
