"""The AWS CLI (Debian's awscli, a client we did not write) lists and fetches the compressed images
the worker stored in S3 (moto's server, real HTTP on loopback), and sees what catalogue/images.py
promises every object: its format's content type and a year of immutable caching, under a key
that is the SHA-256 of its bytes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re

import pytest
from aiohttp import web
from PIL import Image

from catalogue.images import CACHE_CONTROL, CONTENT_TYPES
from testkit.debian_tools import DEBIAN_BIN, debian_tool, run_tool
from testkit.imagegen import png_with_alpha
from tests.integration import test_worker as worker_tests
from tests.integration.test_worker import create_product, finished_product

# The worker tests' fixtures: topics, consumer group and storage of the test's own, the
# loopback image server, workers stopped at the end, moto's S3 server.
settings = worker_tests.settings
images = worker_tests.images
worker_factory = worker_tests.worker_factory
moto_s3 = worker_tests.moto_s3

pytestmark = pytest.mark.integration

BUCKET, PREFIX = "images", "catalogue"
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}  # format -> the keys' extension
PIL_NAMES = {"jpg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


@pytest.fixture(scope="module")
def aws() -> str:
    return debian_tool("aws", "awscli")


@pytest.fixture
def aws_env(moto_s3, tmp_path) -> dict[str, str]:
    """moto's credentials and nothing of the developer's: no ~/.aws, no instance metadata
    lookups (off the loopback), no pager."""
    _, _, credentials = moto_s3
    return {
        **credentials,
        "PATH": DEBIAN_BIN,
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }


def aws_json(aws: str, endpoint: str, env: dict[str, str], *args: str) -> dict:
    result = run_tool([aws, "--endpoint-url", endpoint, "--output", "json", *args], env=env)
    return json.loads(result.stdout)


@pytest.mark.parametrize("output_formats", [("jpeg",), ("jpeg", "webp", "avif")])
async def test_aws_cli_lists_and_fetches_stored_images_with_their_type_and_caching(
    api, user, images, worker_factory, settings, moto_s3, aws, aws_env, tmp_path, output_formats
):
    endpoint, _, credentials = moto_s3
    s3_settings = settings.replace(
        image_storage_url=f"s3://{BUCKET}/{PREFIX}",
        s3_endpoint_url=endpoint,
        image_public_base_url=f"{endpoint}/{BUCKET}",
        image_output_formats=output_formats,
    )
    worker_factory(s3_settings, extra_env=credentials)
    images.routes["/cut-out.png"] = web.Response(
        body=png_with_alpha(900, 900), content_type="image/png"
    )
    sources = [images.url("/photo.jpg"), images.url("/cut-out.png")]
    product_id = await create_product(api, user, sources)
    product = await finished_product(api, product_id)
    assert product["processing_status"] == "done", product["processing_errors"]
    # Every stored object the product's JSON shows, wherever in it: the keys under the bucket.
    shown = json.dumps(product)
    keys = set(re.findall(rf"{re.escape(endpoint)}/{BUCKET}/([^\"\s]+)", shown))
    product_prefix = f"{PREFIX}/products/{product_id}/"
    assert len(keys) >= len(sources), shown  # at least one output per source
    assert all(key.startswith(product_prefix) for key in keys), keys
    assert {key.rpartition(".")[2] for key in keys} == {EXTENSIONS[f] for f in output_formats}

    listed = await asyncio.to_thread(
        aws_json,
        aws,
        endpoint,
        aws_env,
        *("s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", product_prefix),
    )
    sizes = {item["Key"]: item["Size"] for item in listed["Contents"]}
    assert set(sizes) == keys  # the product's outputs, and nothing else under it

    for key in sorted(keys):
        extension = key.rpartition(".")[2]
        head = await asyncio.to_thread(
            aws_json,
            aws,
            endpoint,
            aws_env,
            *("s3api", "head-object", "--bucket", BUCKET, "--key", key),
        )
        assert head["ContentType"] == CONTENT_TYPES[extension]
        assert head["CacheControl"] == CACHE_CONTROL == "public, max-age=31536000, immutable"
        assert head["ContentLength"] == sizes[key]

        fetched = tmp_path / key.rpartition("/")[2]
        await asyncio.to_thread(
            run_tool,
            [aws, "--endpoint-url", endpoint, "s3", "cp", f"s3://{BUCKET}/{key}", str(fetched)],
            env=aws_env,
        )
        data = fetched.read_bytes()
        assert len(data) == sizes[key]
        # Content-addressed: the key names the SHA-256 of the bytes it holds.
        assert key.rpartition("/")[2] == f"{hashlib.sha256(data).hexdigest()}.{extension}"
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == PIL_NAMES[extension]
            image.load()  # the whole image decodes
