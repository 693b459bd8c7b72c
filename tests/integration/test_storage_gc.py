"""`python -m compressor.gc` on local storage and S3 (moto), and the workers' periodic run of
it, one at a time across the group."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time

import asyncpg
import pytest

from catalogue import image_state
from db import products, storage_refs
from testkit.workers import run_command
from tests.integration import test_worker as worker_tests
from tests.integration.conftest import wait_for
from tests.integration.test_worker import create_product
from tests.integration.test_worker_lifecycle import events

# The worker tests' fixtures: topics, consumer group and storage of the test's own, workers
# stopped at the end, moto's S3 server.
settings = worker_tests.settings
worker_factory = worker_tests.worker_factory
moto_s3 = worker_tests.moto_s3

pytestmark = pytest.mark.integration

HOURS_AGO_2 = time.time() - 2 * 3600


def run_gc(settings, *args: str, extra_env=None) -> subprocess.CompletedProcess[str]:
    return run_command(settings, "compressor.gc", *args, extra_env=extra_env)


def key_of(product_id: int, name: str) -> str:
    return f"products/{product_id}/{hashlib.sha256(name.encode()).hexdigest()}.jpg"


async def referencing(db, product_id: int, key: str) -> None:
    entry = {
        **image_state.new_entry("http://img.test/a.jpg", 1),
        "status": "ready",
        "url": f"http://cdn.test/{key}",
        "key": key,
    }
    async with db.acquire() as conn, conn.transaction():
        await products.lock_images(conn, product_id)
        await products.save_images(conn, product_id, [entry], status="done", revision=1)


def write_object(settings, key: str, size: int, mtime: float | None = None) -> None:
    path = settings.local_storage_path / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


async def local_objects(api, user, db, settings) -> dict[str, str]:
    """A referenced object, an unreferenced old one, an unreferenced young one, and a file
    outside `products/`, all in local storage."""
    product_id = int(await create_product(api, user, []))
    keys = {name: key_of(product_id, name) for name in ("referenced", "old", "young")}
    write_object(settings, keys["referenced"], 100, HOURS_AGO_2)
    write_object(settings, keys["old"], 1000, HOURS_AGO_2)
    write_object(settings, keys["young"], 10)
    (settings.local_storage_path / "not-ours.txt").write_text("kept")
    os.utime(settings.local_storage_path / "not-ours.txt", (HOURS_AGO_2, HOURS_AGO_2))
    await referencing(db, product_id, keys["referenced"])
    return keys


def present(settings, keys: dict[str, str]) -> set[str]:
    return {name for name, key in keys.items() if (settings.local_storage_path / key).exists()}


async def test_gc_deletes_unreferenced_objects_older_than_the_grace_on_local_storage(
    api, user, db, settings
):
    keys = await local_objects(api, user, db, settings)

    dry = await asyncio.to_thread(run_gc, settings, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 unreferenced (1.0 kB reclaimable)" in dry.stdout
    assert present(settings, keys) == {"referenced", "old", "young"}  # a dry run deletes nothing

    done = await asyncio.to_thread(run_gc, settings, "--grace", "1h", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["objects"] == 3  # only what lives under products/
    assert (report["deleted"], report["deleted_bytes"]) == (1, 1000)
    assert (report["referenced"], report["young"]) == (1, 1)
    assert present(settings, keys) == {"referenced", "young"}
    assert (settings.local_storage_path / "not-ours.txt").exists()

    await asyncio.to_thread(run_gc, settings, "--grace", "0")
    assert present(settings, keys) == {"referenced"}


async def test_gc_judges_s3_objects_by_their_last_modified_time(api, user, db, settings, moto_s3):
    endpoint, client, env = moto_s3
    s3_settings = settings.replace(
        image_storage_url="s3://images/catalogue", s3_endpoint_url=endpoint
    )
    product_id = int(await create_product(api, user, []))
    referenced, unreferenced = key_of(product_id, "referenced"), key_of(product_id, "unreferenced")
    for key in (referenced, unreferenced):
        client.put_object(Bucket="images", Key=f"catalogue/{key}", Body=b"x" * 500)
    client.put_object(Bucket="images", Key="elsewhere/kept.jpg", Body=b"x")
    await referencing(db, product_id, referenced)

    # Just uploaded: younger than an hour, kept.
    young = await asyncio.to_thread(run_gc, s3_settings, "--json", extra_env=env)
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout)["young"] == 1

    dry = await asyncio.to_thread(run_gc, s3_settings, "--grace", "0", "--dry-run", extra_env=env)
    assert "would delete 1 unreferenced (500 B reclaimable)" in dry.stdout

    done = await asyncio.to_thread(run_gc, s3_settings, "--grace", "0", extra_env=env)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 unreferenced (500 B reclaimed)" in done.stdout
    listed = client.list_objects_v2(Bucket="images")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"catalogue/{referenced}",
        "elsewhere/kept.jpg",
    ]


async def test_gc_refuses_to_run_beside_another_collection(db, settings):
    async with db.acquire() as conn:
        assert await storage_refs.try_gc_lock(conn)
        try:
            busy = await asyncio.to_thread(run_gc, settings)
        finally:
            await storage_refs.release_gc_lock(conn)
    assert busy.returncode == 1
    assert "another storage gc is running" in busy.stderr


async def test_the_workers_run_the_gc_periodically_one_at_a_time(
    api, user, db, settings, worker_factory
):
    keys = await local_objects(api, user, db, settings)
    gc_settings = settings.replace(storage_gc_interval_seconds=0.2, storage_gc_grace_seconds=3600.0)
    holder = await asyncpg.connect(settings.postgres_url)  # another collection, running
    try:
        assert await storage_refs.try_gc_lock(holder)
        workers = [worker_factory(gc_settings), worker_factory(gc_settings)]

        async def both_turned_away() -> bool:
            return all(events(worker, "storage_gc.busy") for worker in workers)

        await wait_for(both_turned_away, timeout_s=90, interval_s=0.1)
        assert present(settings, keys) == {"referenced", "old", "young"}
        assert not any(events(worker, "storage_gc.done") for worker in workers)
    finally:
        await storage_refs.release_gc_lock(holder)
        await holder.close()

    def runs() -> list[dict]:
        return [e for worker in workers for e in events(worker, "storage_gc.done")]

    async def collected_and_reported() -> bool:
        # The object goes first; the run's summary line follows once the run is over.
        return "old" not in present(settings, keys) and any(r["deleted"] for r in runs())

    await wait_for(collected_and_reported, timeout_s=60, interval_s=0.1)
    assert present(settings, keys) == {"referenced", "young"}
    assert sum(run["deleted"] for run in runs()) == 1
