"""The storage garbage collection inside the workers: every STORAGE_GC_INTERVAL_SECONDS (0: never),
each worker tries to run it (compressor/gc.py), and the group's advisory lock lets one at a time
through; a worker that finds it held skips that turn. The first turn comes at a random point of
the first interval, so the workers of a group started together spread their turns out.

A collection holds nothing the worker's jobs need: it runs beside them, on a connection of its
own, and keeps the keys its own process's jobs are uploading (compressor.claims). A failure is
logged and the next turn tries again.
"""

from __future__ import annotations

import asyncio
import logging
import random

from catalogue.background import BackgroundLoop
from compressor.claims import KeyClaims
from compressor.gc import Collectable, collect_exclusively
from compressor.metrics import WorkerMetrics

log = logging.getLogger("compressor")


class PeriodicGc(BackgroundLoop):
    """Used as `async with PeriodicGc(...)`: runs its turns until the block ends."""

    task_name = "storage-gc"

    def __init__(
        self,
        postgres_url: str,
        storage: Collectable,
        claims: KeyClaims,
        metrics: WorkerMetrics,
        *,
        interval_s: float,
        grace_s: float,
    ) -> None:
        self.postgres_url = postgres_url
        self.storage = storage
        self.claims = claims
        self.metrics = metrics
        self.interval_s = interval_s
        self.grace_s = grace_s

    def enabled(self) -> bool:
        return self.interval_s > 0

    async def run(self) -> None:
        await asyncio.sleep(random.uniform(0, self.interval_s))
        while True:
            await self.turn()
            await asyncio.sleep(self.interval_s)

    async def turn(self) -> str:
        """One try: `ran`, `busy` (another collection holds the lock) or `failed`."""
        try:
            report = await collect_exclusively(
                self.postgres_url,
                self.storage,
                grace_s=self.grace_s,
                dry_run=False,
                held=self.claims.held,
            )
        except Exception as exc:
            outcome = "failed"
            log.warning("storage_gc.failed", extra={"error": repr(exc)})
        else:
            outcome = "busy" if report is None else "ran"
            if report is None:
                log.info("storage_gc.busy")
            else:
                self.metrics.objects_deleted.labels("gc").inc(report.deleted)
                log.info("storage_gc.done", extra=report.as_dict())
        self.metrics.storage_gc_runs.labels(outcome).inc()
        return outcome
