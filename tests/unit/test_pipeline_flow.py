"""How images flow through the worker's stages, with in-memory stand-ins for the network, the
process pool, the storage and the database (the real ones are in tests/integration)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from compressor.compress import CompressedImage, CompressOptions
from compressor.download import Downloaded
from compressor.jobs import ImageJob
from compressor.metrics import WorkerMetrics
from compressor.pipeline import Pipeline
from config import load_settings

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
    async def fetchrow(self, *args: object) -> None:
        return None  # the product is gone: finish logs it and returns


async def settled() -> None:
    """Lets every task run until none can make progress."""
    for _ in range(200):
        await asyncio.sleep(0)


async def test_raw_images_held_never_exceed_the_download_and_compress_slots():
    sources = Sources()
    pool = GatedPool(sources)
    download_concurrency = 3
    pipeline = Pipeline(
        settings=load_settings({}, dotenv=None),
        downloader=sources,  # type: ignore[arg-type]
        pool=pool,  # type: ignore[arg-type]
        storage=Storage(),
        db=NoProducts(),  # type: ignore[arg-type]
        cache=None,  # type: ignore[arg-type]
        metrics=WorkerMetrics(),
        download_concurrency=download_concurrency,
        upload_concurrency=2,
    )
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
