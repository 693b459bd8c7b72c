"""Helpers of the console tests: signing in through the form, and the page's CSRF token."""

from __future__ import annotations

import os
import re

from aiohttp.test_utils import TestClient

from server.console.sessions import COOKIE

from .conftest import stack

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "no CSRF token on the page"
    return match[1]


async def sign_in(api: TestClient, key: str) -> str:
    """Signs `api`'s cookie jar in with `key`; the products page's CSRF token."""
    response = await api.post("/console/sign-in", data={"admin_key": key}, allow_redirects=False)
    assert response.status == 303, await response.text()
    assert any(cookie.key == COOKIE for cookie in api.session.cookie_jar)
    page = await api.get("/console/products")
    assert page.status == 200
    return csrf_of(await page.text())


def running_stack_env() -> dict[str, str]:
    """The running stack's addresses, read without `scripts/stack up`: the console tests run
    beside other sessions on one shared stack, which they must never start or restart."""
    names = ("POSTGRES_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    if all(name in os.environ for name in names):  # eval "$(scripts/stack env)", or chosen
        return {name: os.environ[name] for name in names}
    line = stack("env").stdout.strip().removeprefix("export ")
    return dict(item.split("=", 1) for item in line.split())
