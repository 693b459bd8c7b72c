"""`python -m compressor.reprocess`: what each filter selects, a dry run that writes nothing, and
a rollout of new image settings end to end (the old outputs stay shown until the new ones are
ready, then are deleted)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import orjson
import pytest
from PIL import Image

from catalogue import image_state
from catalogue.fingerprint import settings_fingerprint
from catalogue.jobs import ImageJob, decode_job
from compressor.dlq import read_all
from db import products
from testkit.workers import run_command
from tests.integration import test_worker as worker_tests
from tests.integration.conftest import wait_for
from tests.integration.test_worker import create_product, finished_product, stored_path

# The worker tests' fixtures: topics, consumer group and storage of the test's own, the
# loopback image server, workers stopped at the end.
settings = worker_tests.settings
images = worker_tests.images
worker_factory = worker_tests.worker_factory

pytestmark = pytest.mark.integration


def run_reprocess(settings, *args: str) -> subprocess.CompletedProcess[str]:
    completed = run_command(settings, "compressor.reprocess", "--rate", "0", *args)
    assert completed.returncode == 0, completed.stderr
    return completed


@pytest.fixture
async def owner(api) -> str:
    """A user of the test's own, so `--user` keeps the other tests' products out."""
    response = await api.post(
        "/users", json={"username": "owner", "email": f"{uuid.uuid4().hex}@example.com"}
    )
    return (await response.json())["user_id"]


async def product_in_state(api, db, user_id: str, state: str, fingerprint: str | None = None):
    """A product of `user_id` whose one image is `state` (pending, ready or failed), the ready
    output recorded under `fingerprint`: the worker's result, written as the worker writes it."""
    product_id = int(
        await create_product(api, {"user_id": user_id}, [f"http://img.test/{uuid.uuid4()}.jpg"])
    )
    if state == "pending":
        return product_id
    async with db.acquire() as conn, conn.transaction():
        locked = await products.lock_images(conn, product_id)
        entries = orjson.loads(locked["images"])
        source = entries[0]["source"]
        outcome = (
            image_state.Outcome(source, error="HTTP 404")
            if state == "failed"
            else image_state.Outcome(
                source,
                url=f"http://cdn.test/products/{product_id}/a.jpg",
                key=f"products/{product_id}/a.jpg",
                fingerprint=fingerprint,
            )
        )
        change = image_state.apply_outcomes(entries, 1, [outcome])
        assert change is not None
        await products.save_images(
            conn,
            product_id,
            change.entries,
            status=image_state.processing_status(change.entries),
            revision=1,
        )
    return product_id


async def revisions(db, ids) -> dict[int, int]:
    rows = await db.fetch(
        "SELECT id, images_revision FROM products WHERE id = ANY($1::bigint[])", list(ids)
    )
    return {row["id"]: row["images_revision"] for row in rows}


async def published_job(settings, product_id: int, revision: int) -> ImageJob:
    """The image job of that revision, once the API's relay has put it on the jobs topic."""

    async def published() -> ImageJob | None:
        letters = await read_all(settings.kafka_bootstrap_servers, settings.kafka_jobs_topic)
        jobs = [decode_job(letter.value) for letter in letters]
        return next(
            (
                job
                for job in jobs
                if isinstance(job, ImageJob)
                and (job.product_id, job.revision) == (product_id, revision)
            ),
            None,
        )

    return await wait_for(published, timeout_s=30, interval_s=0.1)


def summary(completed: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(completed.stdout)


async def test_status_selects_the_products_in_that_status(api, db, settings, owner):
    failed = await product_in_state(api, db, owner, "failed")
    done = await product_in_state(api, db, owner, "ready")
    pending = await product_in_state(api, db, owner, "pending")

    result = await asyncio.to_thread(
        run_reprocess, settings, "--user", owner, "--status", "failed", "--json"
    )

    assert summary(result) == {"dry_run": False, "selected": 1, "queued": 1, "skipped": {}}
    assert await revisions(db, [failed, done, pending]) == {failed: 2, done: 1, pending: 1}
    entries = await products.image_entries(db, failed)
    assert entries is not None
    assert (entries[0]["status"], entries[0]["revision"]) == ("pending", 2)
    job = await published_job(settings, failed, 2)
    assert job.image_urls == (entries[0]["source"],)
    assert "100%" in result.stderr  # the progress bar


async def test_user_selects_that_user_s_products_and_skips_those_still_pending(
    api, db, settings, owner, user
):
    mine = [await product_in_state(api, db, owner, s) for s in ("ready", "failed", "pending")]
    theirs = await product_in_state(api, db, user["user_id"], "ready")

    result = await asyncio.to_thread(run_reprocess, settings, "--user", owner, "--json")

    assert summary(result) == {
        "dry_run": False,
        "selected": 3,
        "queued": 2,
        "skipped": {"pending": 1},
    }
    assert await revisions(db, [*mine, theirs]) == {mine[0]: 2, mine[1]: 2, mine[2]: 1, theirs: 1}


async def test_outdated_selects_outputs_of_other_image_settings(api, db, settings, owner):
    current = settings_fingerprint(settings)
    fresh = await product_in_state(api, db, owner, "ready", current)
    old = await product_in_state(api, db, owner, "ready", "0123456789abcdef")
    unknown = await product_in_state(api, db, owner, "ready", None)  # before fingerprints

    result = await asyncio.to_thread(
        run_reprocess, settings, "--user", owner, "--outdated", "--json"
    )

    assert summary(result)["queued"] == 2
    assert await revisions(db, [fresh, old, unknown]) == {fresh: 1, old: 2, unknown: 2}


async def test_a_dry_run_queues_nothing(api, db, settings, owner):
    ids = [await product_in_state(api, db, owner, s) for s in ("ready", "failed", "pending")]
    before = await db.fetch(
        "SELECT id, images::text, version FROM products WHERE id = ANY($1::bigint[]) ORDER BY id",
        ids,
    )

    result = await asyncio.to_thread(
        run_reprocess, settings, "--user", owner, "--dry-run", "--json"
    )

    assert summary(result) == {
        "dry_run": True,
        "selected": 3,
        "queued": 2,
        "skipped": {"pending": 1},
    }
    after = await db.fetch(
        "SELECT id, images::text, version FROM products WHERE id = ANY($1::bigint[]) ORDER BY id",
        ids,
    )
    assert after == before  # and no job: it would have been written with a new version


async def test_a_rollout_of_new_settings_replaces_the_outputs_then_deletes_the_old_ones(
    api, images, worker_factory, settings, owner
):
    first = worker_factory()
    product_id = await create_product(api, {"user_id": owner}, [images.url("/photo.jpg")])
    (old_url,) = (await finished_product(api, product_id))["compressed_product_images"]
    assert await asyncio.to_thread(first.stop) == 0
    rolled_out = settings.replace(image_rendition_sizes=(600,))

    result = await asyncio.to_thread(
        run_reprocess, rolled_out, "--user", owner, "--outdated", "--json"
    )
    assert summary(result)["queued"] == 1

    # Until the new output is ready, the old one stays shown (and the cache says so).
    response = await api.get(f"/products/{product_id}")
    shown = await response.json()
    assert response.headers["X-Cache"] == "HIT"
    assert shown["processing_status"] == "pending"
    assert shown["compressed_product_images"] == [old_url]
    assert stored_path(settings, old_url).exists()

    worker_factory(rolled_out)
    product = await finished_product(api, product_id)
    (new_url,) = product["compressed_product_images"]
    assert product["processing_status"] == "done"
    assert new_url != old_url
    with Image.open(stored_path(settings, new_url)) as image:
        assert max(image.size) == 600

    async def old_output_deleted() -> bool:
        return not stored_path(settings, old_url).exists()

    await wait_for(old_output_deleted, timeout_s=60, interval_s=0.1)
