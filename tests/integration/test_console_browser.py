"""The operator console in a real headless Chromium: sign in, a processed product's images
really decode in the page, sign out.

The API listens on a port chosen before it starts, so the worker's image URLs
(IMAGE_PUBLIC_BASE_URL) point at the API's own /images, as they do in a local deployment.
Selenium is synchronous: its steps run in a thread, so the API in this loop keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from config import Settings
from server.app import create_app
from testkit import imagegen
from testkit.workers import ImageServer, WorkerProcess, run_command

from .browser import screenshot, session_browser, until  # noqa: F401  (the `browser` fixture)
from .conftest import wait_for
from .console_helpers import running_stack_env
from .test_api_access import ADMIN, ADMIN_KEY, access_settings, clear_rate_limits, new_user

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PROCESSING_DEADLINE_S = 60


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    return running_stack_env()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    port, worker_ports = free_port(), (free_port(), free_port())
    return access_settings(
        settings,
        api_port=port,
        image_public_base_url=f"http://127.0.0.1:{port}/images",
        image_allow_loopback_sources=True,
        # A failing source is dead-lettered quickly.
        image_retry_base_seconds=0.05,
        image_max_attempts=2,
        # Two supervisors' metrics for the pipeline page: the one a lone worker serves by
        # default (WORKER_METRICS_PORT) and a second one.
        worker_metrics_port=worker_ports[0],
        console_worker_metrics=",".join(f"127.0.0.1:{p}" for p in worker_ports),
    )


@pytest.fixture
async def console_api(console_settings: Settings) -> AsyncIterator[TestClient]:
    await clear_rate_limits(console_settings)
    server = TestServer(
        create_app(console_settings), host="127.0.0.1", port=console_settings.api_port
    )
    client = TestClient(server)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def processed_product(api: TestClient, settings: Settings) -> tuple[str, str]:
    """A product of a new user whose image the real worker processed: (user id, product id)."""
    user_id, headers = await new_user(api)
    images = ImageServer()
    images.routes["/photo.jpg"] = imagegen.photo_jpeg(800, 600)
    await images.start()
    worker = WorkerProcess(settings)
    try:
        created = await api.post(
            "/products",
            json={
                "product_name": "Console lamp",
                "product_price": 12.5,
                "product_images": [images.url("/photo.jpg")],
            },
            headers=headers,
        )
        assert created.status == 201, await created.text()
        product_id = (await created.json())["product_id"]

        async def done() -> bool:
            product = await (await api.get(f"/products/{product_id}", headers=ADMIN)).json()
            return product["processing_status"] == "done"

        await wait_for(done, timeout_s=PROCESSING_DEADLINE_S)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
        await images.stop()
    return user_id, product_id


def sign_in(driver: Any, base: str, key: str) -> None:
    # The browser is the session's: an earlier test's cookie (cookies ignore the port) goes.
    driver.delete_all_cookies()
    driver.get(f"{base}/console")
    form = until(driver, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=sign-in-form]"))
    form.find_element(By.NAME, "admin_key").send_keys(key)
    form.submit()
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=sign-out]"))


def decoded_renditions(driver: Any, product_id: str) -> list[int]:
    """The naturalWidth of every rendition image of the product, once all have loaded."""
    script = """
        const imgs = document.querySelectorAll(
            `[data-product-id="${arguments[0]}"] img[data-testid=rendition]`);
        if (![...imgs].every(img => img.complete)) return null;
        return [...imgs].map(img => img.naturalWidth);
    """
    widths: list[int] = until(driver, lambda d: d.execute_script(script, product_id))
    return widths


async def test_sign_in_see_a_processed_products_images_render_and_sign_out(
    console_api, console_settings, browser
):
    user_id, product_id = await processed_product(console_api, console_settings)
    base = f"http://127.0.0.1:{console_settings.api_port}"

    def in_the_browser() -> None:
        sign_in(browser, base, ADMIN_KEY)
        browser.get(f"{base}/console/products?user_id={user_id}")
        product = until(
            browser,
            lambda d: d.find_element(By.CSS_SELECTOR, f'[data-product-id="{product_id}"]'),
        )
        status = product.find_element(By.CSS_SELECTOR, "[data-testid=product-status]")
        assert status.text == "done"
        widths = decoded_renditions(browser, product_id)
        assert widths, "no renditions shown"
        assert all(width > 0 for width in widths), widths
        # Each beside its source's size and format, with its saving against the source.
        original = product.find_element(By.CSS_SELECTOR, "[data-testid=original]")
        assert re.fullmatch(r"jpeg \d+×\d+, \d+ B", original.text), original.text
        savings = [s.text for s in product.find_elements(By.CSS_SELECTOR, "[data-testid=saving]")]
        assert len(savings) == len(widths), savings
        assert all(re.fullmatch(r"saves -?\d+ %", s) for s in savings), savings
        screenshot(browser, "products")
        browser.find_element(By.CSS_SELECTOR, "[data-testid=sign-out]").click()
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=sign-in-form]"))
        # Signed out: the products page sends the browser back to sign in.
        browser.get(f"{base}/console/products")
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=sign-in-form]"))
        assert not [c for c in browser.get_cookies() if c["name"] == "console_session"]

    await asyncio.to_thread(in_the_browser)


async def test_a_wrong_key_in_the_browser_stays_on_the_sign_in_page(
    console_api, console_settings, browser
):
    base = f"http://127.0.0.1:{console_settings.api_port}"

    def in_the_browser() -> None:
        browser.delete_all_cookies()
        browser.get(f"{base}/console/sign-in")
        form = browser.find_element(By.CSS_SELECTOR, "[data-testid=sign-in-form]")
        form.find_element(By.NAME, "admin_key").send_keys("adm-not-a-key")
        form.submit()
        alert = until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]"))
        assert "not an admin key" in alert.text
        screenshot(browser, "sign-in")
        assert not browser.get_cookies()

    await asyncio.to_thread(in_the_browser)


async def test_replay_a_dead_letter_from_the_page_and_watch_it_complete_without_reloading(
    console_api, console_settings, browser
):
    api, settings = console_api, console_settings
    _, headers = await new_user(api)
    images = ImageServer()
    images.routes["/flaky.jpg"] = web.Response(status=503, text="busy")
    await images.start()
    worker = WorkerProcess(settings)
    try:
        created = await api.post(
            "/products",
            json={
                "product_name": "Flaky lamp",
                "product_price": 3,
                "product_images": [images.url("/flaky.jpg")],
            },
            headers=headers,
        )
        product_id = (await created.json())["product_id"]

        async def failed() -> bool:
            product = await (await api.get(f"/products/{product_id}", headers=ADMIN)).json()
            return product["processing_status"] == "failed"

        await wait_for(failed, timeout_s=PROCESSING_DEADLINE_S)
        # The workers' own tool sees the same letter (it now reads through catalogue/).
        listed = await asyncio.to_thread(
            run_command, settings, "compressor.dlq", "list", "--json", check=True
        )
        keys = [json.loads(line)["key"] for line in listed.stdout.splitlines()]
        assert product_id in keys
        images.routes["/flaky.jpg"] = imagegen.photo_jpeg(640, 480)  # the source recovers
        base = f"http://127.0.0.1:{settings.api_port}"

        def in_the_browser() -> None:
            sign_in(browser, base, ADMIN_KEY)
            browser.get(f"{base}/console/dead-letters")
            row = until(
                browser,
                lambda d: d.find_element(
                    By.CSS_SELECTOR, f'[data-testid=dead-letter][data-product-id="{product_id}"]'
                ),
            )
            assert "503" in row.text
            status = row.find_element(By.CSS_SELECTOR, "[data-testid=letter-status]")
            assert status.text == "failed"
            # A mark on this document: a reload would lose it.
            browser.execute_script("window.consoleTestMark = 'same page'")
            row.find_element(By.CSS_SELECTOR, "[data-testid=replay]").click()
            browser_deadline = PROCESSING_DEADLINE_S

            def completed(d: Any) -> bool:
                cell = d.find_element(
                    By.CSS_SELECTOR,
                    f'[data-testid=dead-letter][data-product-id="{product_id}"] '
                    "[data-testid=letter-status]",
                )
                return cell.text == "done"

            WebDriverWait(browser, browser_deadline, poll_frequency=0.1).until(completed)
            assert browser.execute_script("return window.consoleTestMark") == "same page"
            result = browser.find_element(By.CSS_SELECTOR, "[data-testid=replay-result]")
            assert result.text.startswith("replayed 1")
            screenshot(browser, "dead-letters")

        await asyncio.to_thread(in_the_browser)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
        await images.stop()


async def test_the_pipeline_page_refreshes_the_workers_numbers_and_the_lag_live(
    console_api, console_settings, browser
):
    settings = console_settings
    images = ImageServer()
    images.routes["/photo.jpg"] = imagegen.photo_jpeg(640, 480)
    await images.start()
    # Two supervisors of one group, each on a port the console scrapes (CONSOLE_WORKER_METRICS).
    ports = [address.rsplit(":", 1)[1] for address in settings.worker_metrics_addresses]
    workers = [WorkerProcess(settings, "--metrics-port", port) for port in ports]
    try:
        _, headers = await new_user(console_api)
        created = await console_api.post(
            "/products",
            json={
                "product_name": "Lamp",
                "product_price": 1,
                "product_images": [images.url("/photo.jpg")],
            },
            headers=headers,
        )
        product_id = (await created.json())["product_id"]

        async def done() -> bool:
            product = await (await console_api.get(f"/products/{product_id}", headers=ADMIN)).json()
            return product["processing_status"] == "done"

        await wait_for(done, timeout_s=PROCESSING_DEADLINE_S)
        base = f"http://127.0.0.1:{settings.api_port}"

        def in_the_browser() -> None:
            sign_in(browser, base, ADMIN_KEY)
            browser.get(f"{base}/console/pipeline")
            browser.execute_script("window.consoleTestMark = 'same page'")

            def cell(d: Any, name: str) -> str:
                text: str = d.find_element(By.CSS_SELECTOR, f"[data-testid={name}]").text
                return text

            # Two refreshes at least: the numbers are fetched again, not only at load.
            until(browser, lambda d: int(cell(d, "refreshed") or 0) >= 2)
            assert float(cell(browser, "images-total")) >= 1

            def workers(d: Any) -> list[tuple[str, str]]:
                """Each worker row's address and error (empty: it answered)."""
                try:
                    rows = d.find_elements(By.CSS_SELECTOR, "[data-testid=workers] tr")
                    return [
                        (
                            row.find_element(By.TAG_NAME, "th").text,
                            row.find_elements(By.TAG_NAME, "td")[-1].text,
                        )
                        for row in rows
                    ]
                except StaleElementReferenceException:  # the script replaced the rows meanwhile
                    return []

            # Both supervisors answering (the later one to start may not be listening yet).
            addresses = [f"http://{a}/metrics" for a in settings.worker_metrics_addresses]
            until(browser, lambda d: workers(d) == [(a, "") for a in addresses])
            assert cell(browser, "jobs-in-flight") == "0"
            lag_rows = browser.find_elements(By.CSS_SELECTOR, "[data-testid=lag] tr")
            assert len(lag_rows) == settings.kafka_topic_partitions
            assert all(row.text.endswith(" 0") for row in lag_rows), [r.text for r in lag_rows]
            assert cell(browser, "stages")  # a mean latency for each stage the image went through
            assert browser.execute_script("return window.consoleTestMark") == "same page"
            screenshot(browser, "pipeline")
            browser.get(f"{base}/console/webhooks")
            until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=sign-out]"))
            screenshot(browser, "webhooks")

        await asyncio.to_thread(in_the_browser)
    finally:
        for worker in workers:
            assert worker.stop() == 0, worker.log()[-3000:]
        await images.stop()
