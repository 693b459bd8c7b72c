"""The worker on a product whose images change under it: a job the product outgrew writes
nothing and takes its uploads back, clean-up jobs delete what nothing references (local files
and S3), and a dead letter is replayed only at its own revision."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import orjson
import pytest
from aiohttp import web

from catalogue import image_state
from catalogue.cache import product_key
from catalogue.jobs import DeleteObjects, encode_job, job_key
from catalogue.reprocessing import reprocess_product
from db import outbox, products
from db.outbox import OutboxMessage
from testkit.workers import WorkerProcess
from tests.integration import test_worker as worker_tests
from tests.integration.conftest import wait_for
from tests.integration.test_worker import (
    PHOTO,
    create_product,
    finished_product,
    run_dlq,
    stored_path,
)

# The worker tests' fixtures: topics, consumer group and storage of the test's own, the
# loopback image server, workers stopped at the end, moto's S3 server.
settings = worker_tests.settings
images = worker_tests.images
worker_factory = worker_tests.worker_factory
moto_s3 = worker_tests.moto_s3

pytestmark = pytest.mark.integration


def events(worker: WorkerProcess, name: str) -> list[dict[str, Any]]:
    lines = (line for line in worker.log().splitlines() if line.startswith("{"))
    return [e for e in map(json.loads, lines) if e["event"] == name]


async def logged(worker: WorkerProcess, name: str, timeout_s: float = 90) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        return next(iter(events(worker, name)), None)

    return await wait_for(found, timeout_s=timeout_s, interval_s=0.1)


async def download_held(images, count: int = 1) -> None:
    async def started() -> bool:
        return images.hits["/held/photo.jpg"] >= count

    await wait_for(started, timeout_s=60)


async def change_images(db, product_id: int, sources: list[str]) -> int:
    """What the API does when a product's images change: new entries at the next revision
    (no job is queued here: the test only needs the change). Returns the row's version."""
    async with db.acquire() as conn, conn.transaction():
        locked = await products.lock_images(conn, product_id)
        revision = locked["images_revision"] + 1
        change = image_state.change_sources(orjson.loads(locked["images"]), sources, revision)
        row = await products.save_images(
            conn,
            product_id,
            change.entries,
            status=image_state.processing_status(change.entries),
            revision=revision,
        )
    return row["version"]


async def row_of(db, product_id: int):
    return await db.fetchrow(
        "SELECT images::text AS images, images_revision, version FROM products WHERE id = $1",
        product_id,
    )


@pytest.mark.parametrize("meanwhile", ["images_changed", "product_deleted"])
async def test_a_job_the_product_outgrew_while_it_ran_writes_nothing_and_its_upload_is_deleted(
    api, user, images, worker_factory, settings, db, redis_client, meanwhile
):
    worker = worker_factory()
    product_id = int(await create_product(api, user, [images.url("/held/photo.jpg")]))
    await download_held(images)  # the job is running: its download is in flight
    if meanwhile == "images_changed":
        version = await change_images(db, product_id, [images.url("/other.jpg")])
        before = await row_of(db, product_id)
    else:
        await db.execute("DELETE FROM products WHERE id = $1", product_id)
    images.hold.set()

    superseded = await logged(worker, "job.superseded")

    (uploaded,) = events(worker, "image.uploaded")  # it did upload…
    assert not stored_path(settings, uploaded["url"]).exists()  # …and took it back
    # Every rendition of the source: uploaded, then discarded, none left in storage.
    assert superseded["uploaded"] == superseded["discarded"] == uploaded["objects"] > 1
    folder = settings.local_storage_path / "products" / str(product_id)
    assert not folder.exists() or not any(folder.iterdir())
    assert events(worker, "job.done") == []
    if meanwhile == "images_changed":
        assert await row_of(db, product_id) == before  # not one more version
        assert before["version"] == version
        entries = orjson.loads(before["images"])
        assert [(e["source"], e["status"]) for e in entries] == [
            (images.url("/other.jpg"), "pending")
        ]
    # The cache still holds what the API stored at creation (version 1): no result landed there.
    cached = await redis_client.get(product_key(product_id))
    assert cached is not None
    assert cached.startswith(b"1\n")
    assert uploaded["url"].encode() not in cached


async def test_a_reprocess_racing_the_job_it_supersedes_ends_with_its_output_stored(
    api, user, images, worker_factory, settings, db
):
    """Same settings, same bytes, same key: the superseded job's clean-up must not delete the
    object the new job is about to reference, whichever finishes first."""
    worker_factory()
    product_id = await create_product(api, user, [images.url("/held/photo.jpg")])
    await download_held(images)
    async with db.acquire() as conn:
        reprocessed = await reprocess_product(conn, settings, None, int(product_id))
    assert reprocessed.queued
    await download_held(images, count=2)  # both jobs wait on the same source now
    images.hold.set()

    product = await finished_product(api, product_id)

    assert product["processing_status"] == "done"
    (url,) = product["compressed_product_images"]
    assert stored_path(settings, url).exists()
    assert (await row_of(db, int(product_id)))["images_revision"] == 2


def object_key(product_id: int, name: str) -> str:
    return f"products/{product_id}/{hashlib.sha256(name.encode()).hexdigest()}.jpg"


async def showing(db, product_id: int, key: str) -> None:
    """The product's one entry shows the object `key`."""
    entry = {
        **image_state.new_entry("http://img.test/a.jpg", 1),
        "status": "ready",
        "url": f"http://cdn.test/{key}",
        "key": key,
    }
    async with db.acquire() as conn, conn.transaction():
        await products.lock_images(conn, product_id)
        await products.save_images(conn, product_id, [entry], status="done", revision=1)


async def queue_clean_up(db, settings, product_id: int, keys: tuple[str, ...]) -> None:
    payload = encode_job(DeleteObjects(product_id, keys)).decode()
    message = OutboxMessage(settings.kafka_jobs_topic, job_key(product_id), payload)
    await outbox.insert(db, message)


async def test_a_clean_up_job_deletes_the_objects_nothing_references_from_local_storage(
    api, user, worker_factory, settings, db
):
    worker = worker_factory()
    product_id = int(await create_product(api, user, []))
    gone, shown, missing = (object_key(product_id, n) for n in ("gone", "shown", "missing"))
    for key in (gone, shown):
        path = settings.local_storage_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8\xff" + key.encode())
    await showing(db, product_id, shown)  # an entry references this one again

    await queue_clean_up(db, settings, product_id, (gone, shown, missing))
    deleted = await logged(worker, "objects.deleted")

    assert not (settings.local_storage_path / gone).exists()
    assert (settings.local_storage_path / shown).exists()
    assert (deleted["deleted"], deleted["kept_referenced"]) == (2, 1)  # a missing one is fine


async def test_a_clean_up_job_deletes_the_objects_nothing_references_from_s3(
    api, user, worker_factory, settings, db, moto_s3
):
    endpoint, client, env = moto_s3
    s3_settings = settings.replace(
        image_storage_url="s3://images/catalogue",
        s3_endpoint_url=endpoint,
        image_public_base_url=f"{endpoint}/images",
    )
    worker = worker_factory(s3_settings, extra_env=env)
    product_id = int(await create_product(api, user, []))
    gone, shown = (object_key(product_id, n) for n in ("gone", "shown"))
    for key in (gone, shown):
        client.put_object(Bucket="images", Key=f"catalogue/{key}", Body=b"\xff\xd8\xff")
    await showing(db, product_id, shown)

    await queue_clean_up(db, settings, product_id, (gone, shown))
    await logged(worker, "objects.deleted")

    listed = client.list_objects_v2(Bucket="images", Prefix=f"catalogue/products/{product_id}/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"catalogue/{shown}"]


async def test_a_dead_letter_is_replayed_at_its_own_revision_only(
    api, user, images, worker_factory, settings, db
):
    images.routes["/flaky.jpg"] = web.Response(status=503, text="busy")
    worker_factory()
    product_id = await create_product(api, user, [images.url("/flaky.jpg")])
    assert (await finished_product(api, product_id))["processing_status"] == "failed"
    # Reprocessed (revision 2), and dead-lettered again: two letters, revisions 1 and 2.
    async with db.acquire() as conn:
        assert (await reprocess_product(conn, settings, None, int(product_id))).revision == 2

    async def failed_again() -> bool:
        row = await row_of(db, int(product_id))
        entries = orjson.loads(row["images"])
        return entries[0]["status"] == "failed" and entries[0]["revision"] == 2

    await wait_for(failed_again, timeout_s=90, interval_s=0.2)

    images.routes["/flaky.jpg"] = PHOTO
    replayed = await asyncio.to_thread(run_dlq, settings, "replay", "--product-id", product_id)

    assert "replayed 1 dead letter(s)" in replayed.stderr
    assert "changed_since: 1" in replayed.stderr  # revision 1's letter: nothing to land on
    product = await finished_product(api, product_id)
    assert product["processing_status"] == "done"
