"""The image pipeline end to end, next to the compress-only rate measured in the same run.

``run_workers.py --processes N`` (N = CPU count) runs as a subprocess on its own jobs topic and
consumer group, with local storage in a temporary folder; the real API runs in-process (its
outbox relay publishes the jobs) and the 12 MP photo JPEGs come from a loopback image server.
The pipeline's clock is the worker's own log: from the first job it receives to the last it
finishes. The end-to-end clock runs from the first ``POST /products`` until the database shows
every product out of ``pending`` (polled every 50 ms), so it adds the API's and the outbox
relay's latency. One warm-up product goes through the whole path first, so the relay's producer,
the worker's pool and the connections are up before either clock starts.

The worker renders every source as its default set (compressor.renditions: each size of
IMAGE_RENDITION_SIZES in each of IMAGE_OUTPUT_FORMATS, 4 × JPEG + WebP) and uploads each
rendition. Compress-only: ``render`` with the options the worker builds from the same settings
(compressor.pipeline.rendition_options), so the same set, in a ProcessPoolExecutor of N processes
(forkserver, as the worker's pool), warmed up, over the same number of images, half of them
before the pipeline runs and half after. The ratio pipeline / compress-only shows how well
downloads, uploads and database updates hide behind the CPU work (target ≥ 0.85). The supervisor's CPU time per source image is what the worker
spends outside the pool on each: download, eight uploads, the database, Kafka, and the
renditions' bytes coming back from the pool.

It runs on a database of its own (catalogue_bench_pipeline) and Redis db 9: the other benchmarks
empty theirs when they start, and may run at the same time on a shared machine.

On a small machine the harness (API, image server) shares the cores with the worker: the
breakdown reports its CPU time and the supervisor's during the run, next to the stage times.

Memory: the RSS of the supervisor and every process under it (forkserver, resource tracker,
pool children), sampled every 100 ms from /proc during the timed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.api_process import fresh_database
from bench.conftest import QUICK, free_port, write_result
from compressor.compress import init_worker
from compressor.pipeline import rendition_options
from compressor.renditions import RenditionOptions, render
from config import Settings, load_settings
from server.app import create_app
from testkit.imagegen import photo_jpeg
from testkit.workers import ImageServer, WorkerProcess

# Fewer in quick mode, but not many fewer: a shorter run is mostly ramp-up and tail, not the
# steady state it measures. Each source is now a set of 8 renditions, ~4x the CPU of the single
# JPEG it was, so 32 sources run longer than the 80 single JPEGs did.
PRODUCTS = 16 if QUICK else 40
IMAGES_PER_PRODUCT = 2
PROCESSES = os.cpu_count() or 1
START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 300.0
POLL_INTERVAL_S = 0.05
SAMPLE_INTERVAL_S = 0.1
MIB = 1024 * 1024
DATABASE = "catalogue_bench_pipeline"
REDIS_DB = 9


# -- memory: RSS of a process tree from /proc ---------------------------------------------------


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None  # a zombie has no VmRSS


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> dict[int, str]:
    """pid -> role for the worker's tree: supervisor, its direct children (named from their
    command line) and the processes those started (the pool children of the forkserver)."""
    roles = {root: "supervisor"}
    for child in _children(root):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" in cmdline:
            roles[child] = "resource_tracker"
        elif b"forkserver" in cmdline:
            roles[child] = "forkserver"
        else:
            roles[child] = "child"
        stack = _children(child)
        while stack:
            pid = stack.pop()
            roles[pid] = "pool"
            stack += _children(pid)
    return roles


@dataclass
class RssSampler:
    """Samples the RSS of a process tree every 100 ms in a thread; keeps the peaks."""

    root: int
    peak_total: int = 0
    peaks: dict[int, tuple[str, int]] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> int:
        total = 0
        for pid, role in _tree(self.root).items():
            rss = _rss_bytes(pid)
            if rss is None:
                continue
            total += rss
            if rss > self.peaks.get(pid, (role, 0))[1]:
                self.peaks[pid] = (role, rss)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1
        return total

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def report(self) -> dict[str, Any]:
        processes = sorted(
            (
                {"pid": pid, "role": role, "peak_rss_mib": rss / MIB}
                for pid, (role, rss) in self.peaks.items()
            ),
            key=lambda p: (p["role"] != "supervisor", p["role"], p["pid"]),
        )
        return {
            "peak_total_rss_mib": self.peak_total / MIB,
            "samples": self.samples,
            "processes": processes,
        }


# -- the run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(stack_env, tmp_path_factory) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **stack_env,
        "POSTGRES_URL": fresh_database(stack_env["POSTGRES_URL"], DATABASE),
        "REDIS_URL": stack_env["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}",
        "KAFKA_JOBS_TOPIC": f"bench-pipeline-{suffix}",
        "KAFKA_DLQ_TOPIC": f"bench-pipeline-{suffix}.dlq",
        "WORKER_GROUP_ID": f"bench-pipeline-{suffix}",
        "IMAGE_STORAGE_URL": str(tmp_path_factory.mktemp("pipeline-images")),
        "IMAGE_ALLOW_LOOPBACK_SOURCES": "true",
        "LOG_LEVEL": "warning",
        # The open contract: this measures the pipeline, not the access layer.
        "AUTH_MODE": "off",
    }
    return load_settings(env, None)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return photo_jpeg(4000, 3000)


def describe(options: RenditionOptions) -> str:
    sizes = ", ".join(str(size) for size in options.sizes)
    formats = " + ".join(options.formats)
    count = len(options.sizes) * len(options.formats)
    return f"{count} renditions a source ({sizes} px × {formats})"


def log_breakdown(log: str, product_ids: list[int], start_wall: float) -> dict[str, Any]:
    """Where the time went, from the worker's JSON log: when the first job arrived (relay and
    Kafka latency), when the last finished, and the median time of each image stage (the
    compress time includes the wait for a free pool process)."""
    wanted = set(product_ids)
    received: list[float] = []
    done: list[float] = []
    stages: dict[str, list[float]] = {"downloaded": [], "compressed": [], "uploaded": []}
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("product_id") not in wanted:
            continue
        at = datetime.fromisoformat(event["ts"]).timestamp() - start_wall
        name = event.get("event", "")
        if name == "job.received":
            received.append(at)
        elif name == "job.done":
            done.append(at)
        elif name.startswith("image.") and name.removeprefix("image.") in stages:
            stages[name.removeprefix("image.")].append(float(event["ms"]))
    return {
        "first_job_received_s": min(received, default=None),
        "last_job_done_s": max(done, default=None),
        **{
            f"median_{stage}_ms": statistics.median(values) if values else None
            for stage, values in stages.items()
        },
    }


@contextlib.contextmanager
def worker(settings: Settings, metrics_port: int) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        settings,
        "--processes",
        str(PROCESSES),
        "--metrics-port",
        str(metrics_port),
        extra_env={"LOG_LEVEL": "info"},  # the worker's default, as deployed
    )
    try:
        yield process
    finally:
        try:
            process.stop(timeout_s=60)
        except BaseException:
            process.kill()
            raise
        finally:
            process.log_path.unlink(missing_ok=True)


async def wait_joined(process: WorkerProcess, port: int) -> None:
    """Polls the worker's /healthz until 200 (it has joined its group and got partitions)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            if process.process.poll() is not None:
                raise RuntimeError(f"run_workers.py exited:\n{process.log()[-4000:]}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not joined within {START_TIMEOUT_S} s")
            await asyncio.sleep(POLL_INTERVAL_S)


async def wait_finished(
    db: asyncpg.Connection, product_ids: list[int], process: WorkerProcess
) -> dict[str, int]:
    """Polls the database every 50 ms until no product is pending; returns status counts."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        rows = await db.fetch(
            "SELECT processing_status::text AS status, count(*) AS n FROM products"
            " WHERE id = ANY($1::bigint[]) GROUP BY 1",
            product_ids,
        )
        counts = {row["status"]: row["n"] for row in rows}
        if not counts.get("pending"):
            return counts
        if process.process.poll() is not None:
            raise RuntimeError(f"run_workers.py exited:\n{process.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"products still pending after {RUN_TIMEOUT_S} s: {counts}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def post_product(api: TestClient, user_id: Any, urls: list[str], name: str) -> int:
    response = await api.post(
        "/products",
        json={
            "user_id": user_id,
            "product_name": name,
            "product_images": urls,
            "product_price": 10,
        },
    )
    assert response.status == 201, await response.text()
    return int((await response.json())["product_id"])


async def run_pipeline(settings: Settings, photo: bytes, process: WorkerProcess, port: int):
    paths = [f"/p{p}-{i}.jpg" for p in range(PRODUCTS) for i in range(IMAGES_PER_PRODUCT)]
    images = ImageServer(routes=dict.fromkeys([*paths, "/warm-up.jpg"], photo))
    await images.start()
    api = TestClient(TestServer(create_app(settings)))
    db = await asyncpg.connect(settings.postgres_url)
    try:
        await api.start_server()
        await wait_joined(process, port)
        response = await api.post(
            "/users",
            json={"username": "bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com"},
        )
        assert response.status == 201, await response.text()
        user_id = (await response.json())["user_id"]
        # Warm-up: one product through relay, Kafka, worker and database, untimed.
        warm_up = await post_product(api, user_id, [images.url("/warm-up.jpg")], "Warm-up")
        assert await wait_finished(db, [warm_up], process) == {"done": 1}

        with RssSampler(process.process.pid) as sampler:
            idle_total = sampler.sample()
            start_wall = time.time()
            start_cpu = (time.process_time(), _cpu_seconds(process.process.pid))
            start = time.perf_counter()
            product_ids = await asyncio.gather(
                *(
                    post_product(
                        api,
                        user_id,
                        [
                            images.url(paths[p * IMAGES_PER_PRODUCT + i])
                            for i in range(IMAGES_PER_PRODUCT)
                        ],
                        f"Pipeline product {p}",
                    )
                    for p in range(PRODUCTS)
                )
            )
            posted = time.perf_counter() - start
            counts = await wait_finished(db, product_ids, process)
            elapsed = time.perf_counter() - start
            cpu = {
                "harness_cpu_s": time.process_time() - start_cpu[0],
                "supervisor_cpu_s": _cpu_seconds(process.process.pid) - start_cpu[1],
            }
        assert counts == {"done": PRODUCTS}, counts
        assert all(images.hits[path] == 1 for path in paths), images.hits
        breakdown = {**log_breakdown(process.log(), product_ids, start_wall), **cpu}
        return elapsed, posted, idle_total, sampler, breakdown
    finally:
        await db.close()
        await api.close()
        await images.stop()


def compress_only(photo: bytes, options: RenditionOptions, count: int) -> float:
    """Seconds a warmed pool of PROCESSES (forkserver, the worker's initializer) takes to render
    the set of `count` copies of the photo; start-up and decoder imports stay outside the clock."""
    with ProcessPoolExecutor(
        PROCESSES,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=init_worker,
        initargs=(options.max_pixels,),
    ) as executor:
        list(executor.map(render, [photo] * PROCESSES, [options] * PROCESSES))
        start = time.perf_counter()
        rendered = list(executor.map(render, [photo] * count, [options] * count))
        elapsed = time.perf_counter() - start
    assert all(len(r.renditions) == len(options.sizes) * len(options.formats) for r in rendered)
    return elapsed


def test_pipeline_vs_compress_only(settings: Settings, photo: bytes) -> None:
    images = PRODUCTS * IMAGES_PER_PRODUCT
    port = free_port()
    options = rendition_options(settings)
    # Compress-only runs half before the pipeline and half after it, so a change in how busy the
    # shared machine is during the run weighs on both sides alike.
    before_s = compress_only(photo, options, images // 2)
    with worker(settings, port) as process:
        elapsed, posted, idle_total, sampler, breakdown = asyncio.run(
            run_pipeline(settings, photo, process, port)
        )
    after_s = compress_only(photo, options, images - images // 2)
    compress_s = before_s + after_s
    # The worker's own window, from its log: the first job it received to the last it finished.
    # The time before (POSTs and the outbox relay, in this harness process) is the API's latency,
    # not the pipeline's; the end-to-end rate, clocked from the first POST, is reported too.
    first, last = breakdown["first_job_received_s"], breakdown["last_job_done_s"]
    assert first is not None, "no job.received event in the worker's log"
    assert last is not None, "no job.done event in the worker's log"
    worker_s = last - first
    pipeline_rate = images / worker_s
    compress_rate = images / compress_s
    write_result(
        "pipeline",
        {
            "products": PRODUCTS,
            "images": images,
            "image": "photo_jpeg(4000, 3000)",
            "source_bytes": len(photo),
            "processes": PROCESSES,
            "options": repr(options),
            "renditions": describe(options),
            "pipeline_seconds": worker_s,
            "pipeline_images_per_s": pipeline_rate,
            "end_to_end_seconds": elapsed,
            "end_to_end_images_per_s": images / elapsed,
            "post_seconds": posted,
            "compress_only_seconds": compress_s,
            "compress_only_images_per_s": compress_rate,
            "compress_only_images_per_s_before_after": [
                images // 2 / before_s,
                (images - images // 2) / after_s,
            ],
            "ratio": pipeline_rate / compress_rate,
            "end_to_end_ratio": images / elapsed / compress_rate,
            "breakdown": {
                **breakdown,
                "supervisor_cpu_ms_per_image": breakdown["supervisor_cpu_s"] / images * 1e3,
            },
            "memory": {"idle_total_rss_mib": idle_total / MIB, **sampler.report()},
        },
    )
