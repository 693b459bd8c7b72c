"""The first run of `make run`: the demo path against the real stack and the real worker.

The demo code itself (scripts/demo: samples, sample server, client, flow) drives the real API
app (the `api` fixture, with AUTH_MODE=api_key and an admin key, as `make run` starts it) and a
real worker process (`WorkerProcess`), on ephemeral loopback ports. The worker gets no broad
switch: only the sample server's origin is opened to it. The printed curl line, with the demo
user's key in its header, is run with the real `curl` binary when it is installed (on loopback),
else as the GET it spells. A second run creates nothing, no key either; a revoked key and a lost
state file are recovered through the admin key. Then `scripts/run-all` itself: a taken port
stops it with one line, and a whole run (making its own admin key) prints the summary and stops
everything it started on SIGINT.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid

import aiohttp
import pytest
from PIL import Image

from compressor.renditions import ladder
from config import Settings
from config.settings import env_names, load_settings, settings_to_env
from scripts.demo.client import DemoClient, bearer
from scripts.demo.flow import (
    DEMO_PRODUCTS,
    DemoState,
    database_user_finder,
    render,
    run_demo,
)
from scripts.demo.runner import demo_admin_key
from scripts.demo.samples import BY_NAME, ensure_samples
from scripts.demo.server import SampleServer
from testkit.workers import ROOT, WorkerProcess

from .conftest import wait_for

pytestmark = pytest.mark.integration


def new_admin_key() -> str:
    """A key ADMIN_API_KEYS takes (random, and not shaped like a user key)."""
    key = secrets.token_urlsafe(32)
    return key if not key.startswith("catk_") else new_admin_key()


@pytest.fixture(scope="module")
def admin_key() -> str:
    return new_admin_key()


@pytest.fixture
def settings(base_settings, tmp_path, admin_key):
    """Own topics, consumer group and storage: no job of another test reaches this worker. The
    access layer on, as `make run` starts the API: the demo holds the admin key."""
    suffix = uuid.uuid4().hex[:8]
    return base_settings.replace(
        kafka_jobs_topic=f"first-run-{suffix}",
        kafka_dlq_topic=f"first-run-{suffix}.dlq",
        worker_group_id=f"first-run-{suffix}",
        image_storage_url=str(tmp_path / "images"),
        image_retry_base_seconds=0.05,
        auth_mode="api_key",
        admin_api_keys=admin_key,
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return ensure_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture
async def sample_server(samples):
    server = SampleServer(samples, port=0)
    await server.start()
    yield server
    await server.stop()


def api_base(api) -> str:
    return str(api.make_url("")).rstrip("/")


@pytest.fixture
def worker(settings, api, sample_server):
    worker_settings = settings.replace(
        image_allowed_source_origins=sample_server.origin,
        image_public_base_url=f"{api_base(api)}/images",
        admin_api_keys="",  # as `make run`: the workers never get the admin key
    )
    assert not worker_settings.image_allow_loopback_sources
    assert not worker_settings.image_allow_private_sources
    process = WorkerProcess(worker_settings, "--processes", "1")
    yield process
    process.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def expected_size(name: str, sizes: tuple[int, ...]) -> tuple[int, int]:
    """The size shown (the largest rendition): the displayed (EXIF-rotated) size, fitted into
    the largest of `sizes` not larger than it (or as it is, when smaller than all)."""
    return ladder(*BY_NAME[name].displayed_size, sizes)[-1]


async def count_rows(db) -> tuple[int, int]:
    return (
        await db.fetchval("SELECT count(*) FROM users"),
        await db.fetchval("SELECT count(*) FROM products"),
    )


async def count_keys(db) -> int:
    return await db.fetchval("SELECT count(*) FROM api_keys")


def private(path) -> bool:
    """Readable and writable by its owner only (mode 0600)."""
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def without_headers(line: str) -> str:
    """The curl line with its -H options dropped: the same request without the key."""
    words = shlex.split(line)
    kept = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "-H":
            skip = True
        else:
            kept.append(word)
    return shlex.join(kept)


async def run_curl(line: str, http: aiohttp.ClientSession) -> tuple[int, bytes]:
    """Runs the printed line: with curl itself if installed, else as the GET it spells (with
    the headers of its -H options)."""
    words = shlex.split(line)
    assert words[0] == "curl"
    url = words[-1]
    assert url.startswith("http://127.0.0.1:"), "the curl line must stay on loopback"
    if shutil.which("curl"):
        process = await asyncio.create_subprocess_exec(
            *words, "-o", "-", "-w", "\n%{http_code}", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        body, _, code = out.rpartition(b"\n")
        return int(code), body
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words[:-1]) if word == "-H")
    async with http.get(url, headers=headers) as response:
        return response.status, await response.read()


async def test_demo_products_are_processed_once_and_the_curl_line_works(
    api, db, worker, sample_server, samples, settings, http, tmp_path, admin_key
):
    client = DemoClient(http, api_base(api))
    state_path = tmp_path / "demo.json"
    find_user = database_user_finder(settings.postgres_url)
    rows_before = await count_rows(db)
    keys_before = await count_keys(db)

    summary = await run_demo(
        client,
        sample_server.url,
        state_path,
        find_user=find_user,
        admin_key=admin_key,
        wait_timeout_s=180,
    )

    # The demo created its user and products, and every one of them is done.
    setup = summary.setup
    first_run_created = len(setup.created)
    # It keeps its user's key (the one POST /users answered) in its state file, owner-only.
    assert setup.api_key is not None
    assert setup.api_key.startswith("catk_")
    assert not setup.key_issued
    assert DemoState.load(state_path) == DemoState(
        setup.user_id, {s.name: i for s, i in setup.products}, setup.api_key
    )
    assert private(state_path)
    user_headers = bearer(setup.api_key)
    assert [p.status for p in summary.products] == ["done"] * len(DEMO_PRODUCTS), worker.log()
    assert [p.name for p in summary.products] == [s.name for s in DEMO_PRODUCTS]
    assert summary.not_finished == []

    # Every compressed URL answers with an image of the expected dimensions and content type.
    for (spec, product_id), product_summary in zip(setup.products, summary.products, strict=True):
        async with http.get(
            f"{api_base(api)}/products/{product_id}", headers=user_headers
        ) as response:
            product = await response.json()
        assert product["processing_status"] == "done"
        assert product["product_images"] == [sample_server.url(n) for n in spec.samples]
        compressed = product["compressed_product_images"]
        assert len(compressed) == len(spec.samples)
        for name, url, image in zip(spec.samples, compressed, product_summary.images, strict=True):
            async with http.get(url) as response:
                assert response.status == 200, url
                assert response.content_type == "image/jpeg"
                data = await response.read()
            with Image.open(io.BytesIO(data)) as im:
                assert im.format == "JPEG"
                assert im.size == expected_size(name, settings.image_rendition_sizes), name
            # The summary's numbers are read from the same bytes: before -> after.
            assert image.source.url == sample_server.url(name)
            assert image.source.size == len(samples.files[name])
            assert (image.source.width, image.source.height) == (
                BY_NAME[name].width,
                BY_NAME[name].height,
            )
            assert image.source.orientation == BY_NAME[name].orientation
            assert image.compressed is not None
            assert image.compressed.url == url
            assert image.compressed.size == len(data)
            assert (image.compressed.width, image.compressed.height) == expected_size(
                name, settings.image_rendition_sizes
            )
    # The large photo shows the saving.
    sofa = summary.products[2].images[0]
    assert sofa.compressed is not None
    assert sofa.compressed.size < sofa.source.size / 4

    # The printed curl line, with the demo user's key, answers 200 with the product and its
    # compressed URLs; the same line without the key answers 401.
    printed = render(summary, state_path)
    [line] = [x.strip() for x in printed.splitlines() if x.strip().startswith("curl ")]
    assert (
        line
        == summary.curl
        == (
            f"curl -s -H 'Authorization: Bearer {setup.api_key}' "
            f"{api_base(api)}/products/{setup.products[0][1]}"
        )
    )
    status, body = await run_curl(line, http)
    assert status == 200
    answered = json.loads(body)
    assert answered["product_id"] == setup.products[0][1]
    assert answered["compressed_product_images"] == [
        i.compressed.url for i in summary.products[0].images if i.compressed
    ]
    status, _ = await run_curl(without_headers(line), http)
    assert status == 401
    assert admin_key not in printed

    # The worker said at start-up which origin it opens, and only that one.
    opened = [json.loads(x) for x in worker.log().splitlines() if '"ssrf.sources_opened"' in x]
    assert len(opened) == 1
    assert opened[0]["level"] == "WARNING"
    assert opened[0]["allowed_source_origins"] == [sample_server.origin]
    assert opened[0]["allow_loopback_sources"] is False

    # A second run finds them and creates no new user or product, and no new key: it uses the
    # recorded one.
    rows_after_first = await count_rows(db)
    assert rows_after_first[0] - rows_before[0] == (1 if setup.user_created else 0)
    assert rows_after_first[1] - rows_before[1] == first_run_created
    keys_after_first = await count_keys(db)
    assert keys_after_first - keys_before == (1 if setup.user_created else 0)
    again = await run_demo(
        client, sample_server.url, state_path, find_user=find_user, admin_key=admin_key
    )
    assert again.setup.created == ()
    assert not again.setup.user_created
    assert again.setup.products == setup.products
    assert again.setup.api_key == setup.api_key
    assert not again.setup.key_issued
    assert again.curl == summary.curl
    assert "found from an earlier run" in render(again, state_path)
    assert await count_rows(db) == rows_after_first
    assert await count_keys(db) == keys_after_first

    # Its key revoked (401): the demo issues a fresh one through the admin key and records it.
    key_id = setup.api_key.split("_")[1]
    async with http.delete(
        f"{api_base(api)}/users/{setup.user_id}/api-keys/{key_id}", headers=user_headers
    ) as response:
        assert response.status == 204
    status, _ = await run_curl(summary.curl, http)
    assert status == 401
    revoked = await run_demo(
        client, sample_server.url, state_path, find_user=find_user, admin_key=admin_key
    )
    assert revoked.setup.key_issued
    assert revoked.setup.created == ()
    assert revoked.setup.products == setup.products
    assert revoked.setup.api_key not in (None, setup.api_key)
    assert DemoState.load(state_path).api_key == revoked.setup.api_key
    status, _ = await run_curl(revoked.curl, http)
    assert status == 200
    assert "a new one was issued" in render(revoked, state_path)
    assert await count_rows(db) == rows_after_first
    assert await count_keys(db) == keys_after_first  # one revoked, one issued

    # With the state file lost, the demo user is found through its email: still nothing new
    # but the key it is issued through the admin key (and records, owner-only).
    state_path.unlink()
    lost = await run_demo(
        client, sample_server.url, state_path, find_user=find_user, admin_key=admin_key
    )
    assert lost.setup.created == ()
    assert lost.setup.user_id == setup.user_id
    assert lost.setup.products == setup.products
    assert lost.setup.key_issued
    assert lost.setup.api_key not in (None, revoked.setup.api_key)
    assert DemoState.load(state_path) == DemoState(
        setup.user_id, {s.name: i for s, i in setup.products}, lost.setup.api_key
    )
    assert private(state_path)
    status, body = await run_curl(lost.curl, http)
    assert status == 200
    assert json.loads(body)["product_id"] == setup.products[0][1]
    assert await count_rows(db) == rows_after_first
    assert await count_keys(db) == keys_after_first + 1

    # A wiped database (the recorded products and key are gone, the demo user is not there):
    # the demo creates its user and products again. The old demo user keeps its rows under
    # another email.
    DemoState(
        "1",
        {s.name: str(10**12 + i) for i, s in enumerate(DEMO_PRODUCTS)},
        f"catk_{'0' * 16}_{'A' * 43}",  # well-formed, unknown: 401
    ).save(state_path)
    await db.execute(
        "UPDATE users SET email = $1 WHERE id = $2",
        f"demo-{uuid.uuid4().hex[:8]}@catalogue.invalid",
        int(setup.user_id),
    )
    wiped = await run_demo(
        client, sample_server.url, state_path, find_user=find_user, admin_key=admin_key
    )
    assert wiped.setup.user_created
    assert len(wiped.setup.created) == len(DEMO_PRODUCTS)
    assert [p.status for p in wiped.products] == ["done"] * len(DEMO_PRODUCTS)
    assert wiped.setup.api_key is not None
    assert DemoState.load(state_path) == DemoState(
        wiped.setup.user_id, {s.name: i for s, i in wiped.setup.products}, wiped.setup.api_key
    )
    status, _ = await run_curl(wiped.curl, http)
    assert status == 200


def test_the_demo_admin_key_is_made_once_and_kept_private(tmp_path, admin_key):
    path = tmp_path / ".stack" / "demo-admin-key"
    keyed = Settings(auth_mode="api_key")
    # None with the open contract: no keys at all, nothing written.
    assert demo_admin_key(keyed.replace(auth_mode="off"), path) is None
    assert not path.exists()
    # The first of the user's own ADMIN_API_KEYS, nothing written.
    theirs = demo_admin_key(keyed.replace(admin_api_keys=f"{admin_key},{new_admin_key()}"), path)
    assert theirs is not None
    assert theirs.key == admin_key
    assert theirs.own
    assert theirs.api_environment() == {}
    assert not path.exists()
    # Else one made once, owner-only, and the same one the next time.
    made = demo_admin_key(keyed, path)
    assert made is not None
    assert made.generated
    assert not made.own
    assert path.read_text().strip() == made.key
    assert private(path)
    assert made.api_environment() == {"ADMIN_API_KEYS": made.key}
    assert load_settings({"ADMIN_API_KEYS": made.key}, None).admin_keys == (made.key,)
    path.chmod(0o644)
    kept = demo_admin_key(keyed, path)
    assert kept is not None
    assert kept.key == made.key
    assert not kept.generated
    assert private(path)
    # An unusable file (too short to be an admin key) is replaced.
    path.write_text("short\n")
    remade = demo_admin_key(keyed, path)
    assert remade is not None
    assert remade.generated
    assert remade.key != made.key
    assert private(path)


# -- scripts/run-all -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_all_environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in set(env_names())}
    env.update(settings_to_env(settings))
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("variable", "what"),
    [
        ("API_PORT", "the API"),
        ("WORKER_METRICS_PORT", "the workers' /metrics"),
        ("SAMPLE_SERVER_PORT", "the sample image server"),
        ("DEMO_WEBHOOK_PORT", "the demo webhook receiver"),
    ],
)
def test_a_taken_port_stops_run_all_with_one_line(settings, tmp_path, variable, what):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"API_PORT": str(free_port()), "WORKER_METRICS_PORT": "0"}
        ports["SAMPLE_SERVER_PORT"] = str(free_port())
        ports["DEMO_WEBHOOK_PORT"] = str(free_port())
        ports[variable] = str(port)
        result = subprocess.run(
            [str(ROOT / "scripts" / "run-all"), "--state-file", str(tmp_path / "demo.json")],
            cwd=tmp_path,
            env=run_all_environment(settings, **ports),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"run: port {port} on 127.0.0.1 ({what}) is already in use: stop what listens there, "
        f"or set another, e.g. `{variable}={port + 1} make run`"
    ]
    assert not (tmp_path / "demo.json").exists()
    assert not (tmp_path / "demo-admin-key").exists()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children_of(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


async def test_run_all_prints_a_working_curl_line_and_ctrl_c_stops_everything(
    settings, tmp_path, http
):
    api_port, sample_port, hook_port = free_port(), free_port(), free_port()
    env = run_all_environment(
        settings,
        API_PORT=str(api_port),
        SAMPLE_SERVER_PORT=str(sample_port),
        DEMO_WEBHOOK_PORT=str(hook_port),
        WORKER_METRICS_PORT="0",
        WORKER_PROCESSES="1",
        LOG_FORMAT="json",
        AUTH_MODE="api_key",
        ADMIN_API_KEYS="",  # as on a fresh machine: run-all makes the demo's admin key
    )
    log = (tmp_path / "run-all.log").open("wb")
    # create_subprocess_exec only starts it; every wait below is bounded.
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "run-all"),
        "--state-file",
        str(tmp_path / "demo.json"),
        "--samples-dir",
        str(tmp_path / "samples"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        stderr_log = tmp_path / "run-all.log"

        async def next_curl(also: str = "", start: str = "curl ") -> str:
            """Reads stdout up to the next line starting with `start` (stripped) and holding
            `also`; returns it."""
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no curl line: {output} {stderr_log.read_text()}"
                assert process.stdout is not None
                line = (await asyncio.wait_for(process.stdout.readline(), remaining)).decode()
                assert line, f"run-all ended: {stderr_log.read_text()}"
                output.append(line)
                if line.strip().startswith(start) and also in line:
                    return line.strip()

        curl = await next_curl()
        text = "".join(output)
        assert text.count(" [done] ") == len(DEMO_PRODUCTS), text
        assert f"http://127.0.0.1:{sample_port}/samples/" in text
        assert f"http://127.0.0.1:{api_port}/images/products/" in text
        status, body = await run_curl(curl, http)
        assert status == 200
        assert json.loads(body)["compressed_product_images"]
        # The line sends the demo user's key, kept (owner-only) in the state file; the admin key
        # run-all made is kept owner-only next to it, and printed nowhere.
        state = DemoState.load(tmp_path / "demo.json")
        assert state is not None
        assert state.api_key is not None
        assert f"-H 'Authorization: Bearer {state.api_key}' " in curl
        status, _ = await run_curl(without_headers(curl), http)
        assert status == 401
        assert private(tmp_path / "demo.json")
        admin_key_file = tmp_path / "demo-admin-key"
        assert private(admin_key_file)
        made_admin_key = admin_key_file.read_text().strip()
        assert load_settings({"ADMIN_API_KEYS": made_admin_key}, None).admin_keys == (
            made_admin_key,
        )
        assert made_admin_key not in text

        # The demo endpoint, registered before the products were made, received their events,
        # signed with the secret of the endpoint (the receiver verifies each one).
        deliveries_curl = await next_curl("/deliveries")
        text = "".join(output)
        assert f"the demo endpoint http://127.0.0.1:{hook_port}/webhook" in text
        # The first run leads to the console, naming the admin key's file, never the key.
        await next_curl("cat ", start="(to paste it:")
        text = "".join(output)
        assert f"The operator console: http://127.0.0.1:{api_port}/console" in text
        assert f"cat {admin_key_file}" in text

        async def verified_events() -> list[str]:
            async with http.get(f"http://127.0.0.1:{hook_port}/") as response:
                received = (await response.json())["received"]
            kinds = {r["type"] for r in received}
            return sorted(kinds) if {"product.created", "product.processed"} <= kinds else []

        assert await wait_for(verified_events, timeout_s=60)
        status, body = await run_curl(deliveries_curl, http)
        assert status == 200
        listed = json.loads(body)["deliveries"]
        assert any(d["state"] == "delivered" for d in listed), listed
        assert private(tmp_path / "demo-webhook.json")
        signing_key_file = tmp_path / "demo-webhook-signing-key"
        assert private(signing_key_file)
        assert signing_key_file.read_text().strip() not in text

        started = children_of(process.pid)
        # The API, the workers and the webhook dispatcher; the sample server and the demo
        # webhook receiver are in-process.
        assert len(started) == 3
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 120) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    assert not [pid for pid in started if alive(pid)]
    # Every port it listened on is free again.
    for port in (api_port, sample_port, hook_port):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    stderr = (tmp_path / "run-all.log").read_text()
    assert "run: stopped" in stderr
    assert "Traceback" not in stderr
    assert made_admin_key not in stderr
