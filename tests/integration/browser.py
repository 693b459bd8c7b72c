"""Debian's Chromium, headless, driven by Selenium (shared/notes/browser-testing.md): one browser
per test session, and the waits the page tests use (a condition and a deadline, never a sleep)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEADLINE_S = 20


def start_browser() -> webdriver.Chrome:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian's chromium and chromium-driver (make test installs them)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the sessions run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    # The driver's path given: Selenium Manager must not try to download one.
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture(scope="session", name="browser")
def session_browser() -> Iterator[webdriver.Chrome]:
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any]) -> Any:
    return WebDriverWait(driver, DEADLINE_S, poll_frequency=0.05).until(condition)


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    """With CONSOLE_SCREENSHOTS_DIR (scripts/bench sets bench/results/console), the page as a
    PNG there: the README links them."""
    directory = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(Path(directory) / f"{name}.png"))
