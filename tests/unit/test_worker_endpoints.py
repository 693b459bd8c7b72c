"""The worker's /metrics and /healthz, served on a loopback port in this process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import pytest

from compressor.endpoints import WorkerEndpoints
from compressor.metrics import WorkerMetrics
from compressor.pipeline import Stage
from compressor.renditions import RenditionOptions
from compressor.supervisor import compression_pool
from config import load_settings
from testkit.imagegen import photo_jpeg


@dataclass
class Consumer:
    inflight_jobs: int = 0
    healthy: bool = False


async def get(endpoints: WorkerEndpoints, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{endpoints.port}{path}") as response,
    ):
        return response.status, await response.text()


@pytest.fixture
def metrics() -> WorkerMetrics:
    return WorkerMetrics()


@pytest.fixture
def consumer() -> Consumer:
    return Consumer()


@pytest.fixture
def stages() -> dict[str, Stage]:
    return {"download": Stage("download", 2), "upload": Stage("upload", 1)}


@pytest.fixture
async def endpoints(
    metrics: WorkerMetrics, stages: Mapping[str, Stage], consumer: Consumer
) -> AsyncIterator[WorkerEndpoints]:
    async with WorkerEndpoints(metrics, stages, consumer, host="127.0.0.1", port=0) as served:
        yield served


async def test_health_is_ok_only_once_the_consumer_is_in_its_group(endpoints, consumer):
    assert (await get(endpoints, "/healthz"))[0] == 503
    consumer.healthy = True
    assert (await get(endpoints, "/healthz"))[0] == 200


async def test_metrics_show_the_jobs_in_flight_and_the_slots_in_use(endpoints, consumer, stages):
    consumer.inflight_jobs = 3
    await stages["download"].acquire()
    await stages["upload"].acquire()  # its only slot
    waiting = asyncio.create_task(stages["upload"].acquire())
    await asyncio.sleep(0)  # lets it queue up
    assert stages["upload"].waiting == 1
    try:
        status, text = await get(endpoints, "/metrics")
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    assert status == 200
    assert "worker_inflight_jobs 3.0" in text
    assert 'worker_stage_busy{stage="download"} 1.0' in text
    assert 'worker_stage_busy{stage="upload"} 1.0' in text
    assert 'worker_queue_depth{stage="upload"} 1.0' in text


async def test_pool_rebuilds_are_counted_as_a_counter(endpoints, metrics):
    """A count that only grows is a Counter: worker_pool_rebuilds_total, not a gauge."""
    settings = load_settings({}, dotenv=None)
    async with compression_pool(settings, 1, metrics) as pool:
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        await pool.compress(photo_jpeg(200, 100), RenditionOptions(sizes=(64,)))
        assert pool.rebuilds == 1
    _, text = await get(endpoints, "/metrics")
    assert "# TYPE worker_pool_rebuilds_total counter" in text
    assert "worker_pool_rebuilds_total 1.0" in text
