"""Scale-out: three worker supervisors in one consumer group share the jobs topic's partitions,
each product is processed exactly once, and a rolling restart of all three under load loses and
duplicates nothing.

"Exactly once" is counted from the workers' logs: one `image.uploaded` per image and one
`job.done` per job (product and revision) across the three, with storage holding exactly the
objects the database references. During the rolling restart a job may be redone (a revoked
partition's in-flight jobs are cancelled and run again by the new owner: at-least-once), but it
lands once: a redelivered job finds nothing pending at its revision and is skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from catalogue import image_state
from testkit.imagegen import photo_jpeg
from testkit.soak.settle import Idle, stored_keys
from testkit.workers import ImageServer, WorkerProcess

from .conftest import wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 6
WORKERS = 3
IDLE_TIMEOUT_S = 120.0


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    server = ImageServer(routes={f"/{n}.jpg": photo_jpeg(160 + n, 120) for n in range(8)})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings(base_settings, tmp_path, images):
    """Own topics (6 partitions), group and storage; the workers fetch from `images` only."""
    suffix = uuid.uuid4().hex[:8]
    return base_settings.replace(
        kafka_jobs_topic=f"scale-out-{suffix}",
        kafka_dlq_topic=f"scale-out-{suffix}.dlq",
        kafka_topic_partitions=PARTITIONS,
        worker_group_id=f"scale-out-{suffix}",
        image_storage_url=str(tmp_path / "images"),
        image_allowed_source_origins=images.base_url,
        image_rendition_sizes=(120,),
        storage_gc_interval_seconds=0.0,
        worker_shutdown_timeout_seconds=20.0,
    )


@pytest.fixture
def workers(settings) -> Iterator[list[WorkerProcess]]:
    started = [WorkerProcess(settings, "--processes", "1") for _ in range(WORKERS)]
    yield started
    for worker in started:
        worker.stop()


def events(worker: WorkerProcess, name: str) -> list[dict[str, Any]]:
    lines = (line for line in worker.log().splitlines() if line.startswith("{"))
    return [e for e in map(json.loads, lines) if e["event"] == name]


async def spread_over_all(workers: list[WorkerProcess]) -> list[list[int]]:
    """Each worker's latest assignment, once they split every partition between all three."""

    async def split() -> list[list[int]] | None:
        for worker in workers:
            assert worker.process.poll() is None, worker.log()[-3000:]
        latest = []
        for worker in workers:
            assigned = events(worker, "worker.assigned")
            revoked = events(worker, "worker.revoked")
            # An assignment revoked since (the group rebalancing as members join) is not held.
            if not assigned or (revoked and revoked[-1]["ts"] > assigned[-1]["ts"]):
                return None
            latest.append(assigned[-1]["partitions"])
        flat = [p for parts in latest for p in parts]
        whole = sorted(flat) == list(range(PARTITIONS)) and all(latest)
        return latest if whole else None

    return await wait_for(split, timeout_s=90, interval_s=0.2)


async def create(api, user: dict[str, str], images: ImageServer, n: int) -> int:
    sources = [images.url(f"/{(n + k) % 8}.jpg") + f"?p={n}" for k in range(1 + n % 2)]
    response = await api.post(
        "/products",
        json={
            "user_id": user["user_id"],
            "product_name": f"Scale {n}",
            "product_price": 1,
            "product_images": sources,
        },
    )
    assert response.status == 201, await response.text()
    return int((await response.json())["product_id"])


async def settled(settings, product_ids: list[int]) -> None:
    idle = Idle(
        settings.postgres_url,
        settings.kafka_bootstrap_servers,
        settings.kafka_jobs_topic,
        settings.worker_group_id,
        product_ids=product_ids,
    )
    await idle.wait(IDLE_TIMEOUT_S)


async def all_done_exactly_once(
    db, settings, workers: list[WorkerProcess], product_ids: list[int]
) -> Counter[tuple[int, str]]:
    """Every product done, each image's output stored, each job landed once; the uploads per
    image, counted over every worker's log."""
    rows = await db.fetch(
        "SELECT id, images::text AS images FROM products WHERE id = ANY($1::bigint[])",
        product_ids,
    )
    assert len(rows) == len(product_ids)  # none lost, none twice (ids are unique)
    entries = {r["id"]: orjson.loads(r["images"]) for r in rows}
    assert all(image_state.processing_status(e) == "done" for e in entries.values()), entries
    referenced = {k for e in entries.values() for k in image_state.referenced_keys(e)}
    stored = stored_keys(settings.local_storage_path)
    assert stored == referenced  # nothing redone left an object behind, nothing is missing
    landed = Counter(
        (e["product_id"], e["revision"]) for w in workers for e in events(w, "job.done")
    )
    twice = {job: n for job, n in landed.items() if n > 1}
    assert twice == {}, f"jobs that landed more than once: {twice}"
    assert {p for p, _ in landed} == set(product_ids)
    return Counter(
        (e["product_id"], e["image"]) for w in workers for e in events(w, "image.uploaded")
    )


async def test_three_workers_share_the_partitions_and_process_each_product_exactly_once(
    api, user, db, settings, images, workers
):
    assignment = await spread_over_all(workers)
    print(f"partitions per worker: {assignment}")

    product_ids = [await create(api, user, images, n) for n in range(36)]
    await settled(settings, product_ids)

    uploads = await all_done_exactly_once(db, settings, workers, product_ids)
    images_made = sum(1 + n % 2 for n in range(36))
    assert sum(uploads.values()) == images_made
    assert set(uploads.values()) == {1}  # each image uploaded once, by one worker
    done_by = [len(events(w, "job.done")) for w in workers]
    print(f"jobs done per worker: {done_by}")
    assert all(done_by)  # the products' keys spread them over all three


async def test_a_rolling_restart_of_all_three_under_load_loses_and_duplicates_nothing(
    api, user, db, settings, images, workers
):
    await spread_over_all(workers)
    product_ids: list[int] = []
    restarting = asyncio.Event()

    async def load() -> None:
        n = 0
        while not restarting.is_set() or n < 10:
            product_ids.append(await create(api, user, images, n))
            n += 1
            await asyncio.sleep(0.05)  # a steady trickle of creates, not a burst

    creating = asyncio.create_task(load())
    started = time.monotonic()
    for n, worker in enumerate(list(workers)):
        code = await asyncio.to_thread(worker.stop)
        assert code == 0, worker.log()[-3000:]  # drained within its shutdown timeout
        workers.append(WorkerProcess(settings, "--processes", "1"))
        current = workers[n + 1 :][-WORKERS:]
        await spread_over_all(current)
    restarting.set()
    await creating
    print(
        f"rolling restart of {WORKERS} workers in {time.monotonic() - started:.1f} s, "
        f"{len(product_ids)} products created meanwhile"
    )

    await settled(settings, product_ids)
    uploads = await all_done_exactly_once(db, settings, workers, product_ids)
    redone = sum(n - 1 for n in uploads.values())
    print(f"{sum(uploads.values())} uploads for {len(uploads)} images ({redone} redone)")
    assert len(uploads) == sum(1 + n % 2 for n in range(len(product_ids)))
