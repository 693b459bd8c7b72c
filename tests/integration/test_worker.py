"""The worker end to end: Kafka → download (loopback image server) → process pool → storage →
PostgreSQL and the cache; failures, retries, dead letters, crashes, S3 and the SSRF guard."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import boto3
import pytest
from aiohttp import web
from PIL import Image

from testkit.imagegen import photo_jpeg
from testkit.workers import ImageServer, WorkerProcess, run_command
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

PHOTO = photo_jpeg(2400, 1600)


@pytest.fixture
def settings(base_settings, tmp_path):
    """Own topics and storage per test: no job of another test ever reaches this worker."""
    suffix = uuid.uuid4().hex[:8]
    return base_settings.replace(
        kafka_jobs_topic=f"worker-jobs-{suffix}",
        kafka_dlq_topic=f"worker-jobs-{suffix}.dlq",
        image_storage_url=str(tmp_path / "images"),
        image_allow_loopback_sources=True,
        image_retry_base_seconds=0.05,
        image_max_attempts=3,
        image_max_download_bytes=2 * 1024 * 1024,
        image_rendition_sizes=(200, 800),
        worker_group_id=f"test-workers-{suffix}",
    )


@pytest.fixture
async def images():
    server = ImageServer(routes={"/photo.jpg": PHOTO})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def worker_factory(settings):
    started: list[WorkerProcess] = []

    def start(worker_settings=None, *args: str, **kwargs) -> WorkerProcess:
        worker = WorkerProcess(worker_settings or settings, "--processes", "1", *args, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


async def create_product(api, user, urls):
    response = await api.post(
        "/products",
        json={
            "user_id": user["user_id"],
            "product_name": "Lamp",
            "product_images": urls,
            "product_price": 10,
        },
    )
    assert response.status == 201
    return (await response.json())["product_id"]


async def finished_product(api, product_id, timeout_s=90):
    async def finished():
        body = await (await api.get(f"/products/{product_id}")).json()
        return body if body["processing_status"] != "pending" else None

    return await wait_for(finished, timeout_s=timeout_s, interval_s=0.2)


def stored_path(settings, url: str) -> Path:
    key = url.split("/images/", 1)[1]
    return settings.local_storage_path / key


async def test_product_images_are_compressed_stored_and_cached_fresh(
    api, user, images, worker_factory, settings, redis_client
):
    worker = worker_factory()
    urls = [images.url("/photo.jpg"), images.url("/photo.jpg?second")]
    product_id = await create_product(api, user, urls)
    product = await finished_product(api, product_id)
    assert product["processing_status"] == "done"
    assert len(product["compressed_product_images"]) == 2
    for url in product["compressed_product_images"]:
        assert url.startswith(settings.image_public_base_url.rstrip("/") + "/products/")
        with Image.open(stored_path(settings, url)) as image:
            assert image.format == "JPEG"
            assert max(image.size) == 800
    for entry, url in zip(product["images"], product["compressed_product_images"], strict=True):
        # Each source: every size in each default format, the largest JPEG shown.
        got = [(r["format"], max(r["width"], r["height"])) for r in entry["renditions"]]
        assert got == [("jpeg", 200), ("jpeg", 800), ("webp", 200), ("webp", 800)]
        assert entry["url"] == url == entry["renditions"][1]["url"]
        for rendition in entry["renditions"]:
            path = stored_path(settings, rendition["url"])
            assert path.stat().st_size == rendition["bytes"]
            with Image.open(path) as image:
                assert image.format == rendition["format"].upper()
                assert image.size == (rendition["width"], rendition["height"])
    # The worker wrote the fresh value into the cache: the next read is a HIT and is done.
    response = await api.get(f"/products/{product_id}")
    assert response.headers["X-Cache"] == "HIT"
    assert (await response.json())["processing_status"] == "done"
    # And the API serves the stored file.
    key = product["compressed_product_images"][0].split("/images/", 1)[1]
    served = await api.get(f"/images/{key}")
    assert served.status == 200
    assert served.headers["Content-Type"] == "image/jpeg"
    # SIGTERM drains and exits 0; the log holds one JSON event per line.
    assert await asyncio.to_thread(worker.stop) == 0
    events = [
        json.loads(line)["event"] for line in worker.log().splitlines() if line.startswith("{")
    ]
    for event in (
        "job.received",
        "image.downloaded",
        "image.compressed",
        "image.uploaded",
        "job.done",
        "worker.stopped",
    ):
        assert event in events


async def test_bad_images_fail_alone_and_the_product_is_partial(api, user, images, worker_factory):
    images.routes["/page.html"] = web.Response(
        body=b"<html>hello</html>" * 10, headers={"Content-Type": "image/jpeg"}
    )
    images.routes["/huge.jpg"] = PHOTO[:4] + b"\0" * (3 * 1024 * 1024)
    worker_factory()
    sources = {
        "ok": images.url("/photo.jpg"),
        "missing": images.url("/missing.jpg"),
        "not_image": images.url("/page.html"),
        "too_large": images.url("/huge.jpg"),
    }
    product = await finished_product(api, await create_product(api, user, list(sources.values())))
    assert product["processing_status"] == "partial"
    assert len(product["compressed_product_images"]) == 1
    errors = {e["image"]: e["error"] for e in product["processing_errors"]}
    assert set(errors) == {sources["missing"], sources["not_image"], sources["too_large"]}
    assert "HTTP 404" in errors[sources["missing"]]
    assert errors[sources["not_image"]].startswith("not_an_image")
    assert errors[sources["too_large"]].startswith("too_large")
    # Permanent failures are not retried.
    assert images.hits["/missing.jpg"] == 1


def run_dlq(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command(settings, "compressor.dlq", *args, check=True)


async def test_always_failing_source_is_retried_then_dead_lettered_and_replayable(
    api, user, images, worker_factory, settings
):
    images.routes["/flaky.jpg"] = web.Response(status=503, text="busy")
    worker_factory()
    product_id = await create_product(api, user, [images.url("/flaky.jpg")])
    product = await finished_product(api, product_id)
    assert product["processing_status"] == "failed"
    assert "dead_lettered" in product["processing_errors"][0]["error"]
    assert images.hits["/flaky.jpg"] == settings.image_max_attempts

    listed = await asyncio.to_thread(run_dlq, settings, "list", "--json")
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(letters) == 1
    letter = letters[0]
    assert letter["key"] == product_id
    assert letter["attempts"] == str(settings.image_max_attempts)
    assert letter["source_topic"] == settings.kafka_jobs_topic
    assert letter["consumer_group"] == settings.worker_group_id
    assert "503" in letter["error_message"]

    # The source recovers; replaying the dead letter completes the product.
    images.routes["/flaky.jpg"] = PHOTO
    await asyncio.to_thread(run_dlq, settings, "replay", "--product-id", product_id)

    async def done():
        body = await (await api.get(f"/products/{product_id}")).json()
        return body["processing_status"] == "done"

    await wait_for(done, timeout_s=90, interval_s=0.2)


async def test_an_image_url_redirects_to_the_rendition_the_browser_can_show(
    api, user, images, worker_factory, settings
):
    worker_factory()
    product_id = await create_product(api, user, [images.url("/photo.jpg")])
    product = await finished_product(api, product_id)
    by_format = {(r["format"], r["width"]): r for r in product["images"][0]["renditions"]}
    chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    for accept, w, expected in [
        (chrome, "300", ("webp", 800)),  # the smallest at least 300 wide, in WebP
        (chrome, "100", ("webp", 200)),
        ("image/jpeg", "300", ("jpeg", 800)),
        ("image/webp;q=0, */*", "100", ("jpeg", 200)),
    ]:
        response = await api.get(
            f"/products/{product_id}/images/0",
            params={"w": w},
            headers={"Accept": accept},
            allow_redirects=False,
        )
        assert response.status == 302, await response.text()
        assert response.headers["Vary"] == "Accept"
        location = response.headers["Location"]
        assert location == by_format[expected]["url"], (accept, w)
        # The API serves what the redirect names: the worker's stored rendition.
        served = await api.get("/images/" + location.split("/images/", 1)[1])
        assert served.status == 200
        with Image.open(io.BytesIO(await served.read())) as image:
            assert image.format == expected[0].upper()
            assert image.width == expected[1]


async def test_killed_worker_job_is_completed_once_by_the_next_worker(
    api, user, images, worker_factory, settings
):
    first = worker_factory()
    product_id = await create_product(api, user, [images.url("/held/photo.jpg")])

    async def download_started():
        return images.hits["/held/photo.jpg"] >= 1

    await wait_for(download_started, timeout_s=60)
    first.kill()  # mid-job: the download is in flight, nothing is committed
    images.hold.set()
    worker_factory()
    product = await finished_product(api, product_id)
    assert product["processing_status"] == "done"
    assert len(product["compressed_product_images"]) == 1
    stored = {p.name for p in (settings.local_storage_path / "products" / product_id).iterdir()}
    (entry,) = product["images"]
    # Exactly the product's renditions: the killed worker stored nothing that lingers.
    assert stored == {r["url"].rsplit("/", 1)[1] for r in entry["renditions"]}
    assert len(stored) == 4


async def test_loopback_source_is_blocked_when_not_allowed(
    api, user, images, worker_factory, settings
):
    worker_factory(settings.replace(image_allow_loopback_sources=False))
    product = await finished_product(
        api, await create_product(api, user, [images.url("/photo.jpg")])
    )
    assert product["processing_status"] == "failed"
    assert "blocked" in product["processing_errors"][0]["error"]
    assert images.hits["/photo.jpg"] == 0  # not a single request reached the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_s3():
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    async def up():
        try:
            await asyncio.to_thread(client.list_buckets)
        except Exception:
            return False
        return True

    asyncio.run(wait_for(up, timeout_s=30))
    client.create_bucket(Bucket="images")
    yield endpoint, client, env
    process.terminate()
    process.wait(timeout=30)


async def test_images_are_uploaded_to_s3(api, user, images, worker_factory, settings, moto_s3):
    endpoint, client, env = moto_s3
    s3_settings = settings.replace(
        image_storage_url="s3://images/catalogue",
        s3_endpoint_url=endpoint,
        image_public_base_url=f"{endpoint}/images",
    )
    worker_factory(s3_settings, extra_env=env)
    product = await finished_product(
        api, await create_product(api, user, [images.url("/photo.jpg")])
    )
    assert product["processing_status"] == "done"
    url = product["compressed_product_images"][0]
    key = url.removeprefix(f"{endpoint}/images/")
    assert key.startswith(f"catalogue/products/{product['product_id']}/")
    stored = client.get_object(Bucket="images", Key=key)
    assert stored["ContentType"] == "image/jpeg"
    assert stored["CacheControl"] == "public, max-age=31536000, immutable"
    assert stored["Body"].read()[:3] == b"\xff\xd8\xff"


def metrics_port(worker: WorkerProcess) -> int | None:
    for line in worker.log().splitlines():
        if '"worker.metrics_listening"' in line:
            return json.loads(line)["port"]
    return None


async def test_inflight_jobs_are_capped_and_the_rest_wait_in_kafka(
    api, user, images, worker_factory
):
    worker = worker_factory(None, "--max-inflight-jobs", "1")
    ids = [await create_product(api, user, [images.url(f"/held/photo.jpg?{i}")]) for i in range(3)]

    async def first_download_held():
        return images.hits["/held/photo.jpg"] >= 1

    await wait_for(first_download_held, timeout_s=60)
    port = await wait_for(lambda: asyncio.sleep(0, metrics_port(worker)), timeout_s=30)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200  # joined its group
    assert "worker_inflight_jobs 1.0" in metrics
    assert images.hits["/held/photo.jpg"] == 1  # the other jobs were not taken yet
    images.hold.set()
    for product_id in ids:
        assert (await finished_product(api, product_id))["processing_status"] == "done"
