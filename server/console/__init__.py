"""The operator console: server-rendered HTML at /console, signed in with an admin key.

It exists only with AUTH_MODE=api_key (it needs admin keys). Its routes are not in the API's
access table: the console authenticates by its own session cookie (server/console/sessions.py),
not by bearer keys, and its HTML is not part of /openapi.json.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from server.access import Handler
from server.console import pages
from server.console.pipeline import PipelineView
from server.console.sessions import Sessions
from server.keys import CACHE, SETTINGS


async def console_sessions(app: web.Application) -> AsyncIterator[None]:
    """The sessions, over the product cache's Redis client (one pool for both), and the
    pipeline page's view with the HTTP client it scrapes the worker's metrics with."""
    app[pages.SESSIONS] = Sessions(app[CACHE].client)
    app[pages.PIPELINE] = PipelineView(app[SETTINGS])
    async with aiohttp.ClientSession() as http:
        app[pages.SCRAPER] = http
        yield


def add_console(app: web.Application, add: Callable[[str, str, Handler], None]) -> None:
    """The console's routes, each through `add` (the API's route registration), and its
    sessions' context (after Redis's, before the heap freeze)."""
    app.cleanup_ctx.insert(len(app.cleanup_ctx) - 1, console_sessions)
    base = urlsplit(app[SETTINGS].image_public_base_url)
    image_origin = f"{base.scheme}://{base.netloc}"
    signed_out = pages.console_page(image_origin, signed_in=False)
    signed_in = pages.console_page(image_origin, signed_in=True)
    add("GET", "/console", signed_out(pages.home))
    add("GET", "/console/sign-in", signed_out(pages.sign_in_form))
    add("POST", "/console/sign-in", signed_out(pages.sign_in))
    add("POST", "/console/sign-out", signed_in(pages.sign_out))
    add("GET", "/console/products", signed_in(pages.products))
    add("GET", "/console/webhooks", signed_in(pages.webhooks))
    add("GET", "/console/dead-letters", signed_in(pages.dead_letters_page))
    add("POST", "/console/dead-letters/replay", signed_in(pages.replay))
    add("GET", "/console/products/status", signed_in(pages.statuses))
    add("GET", "/console/pipeline", signed_in(pages.pipeline_page))
    add("GET", "/console/pipeline.json", signed_in(pages.pipeline_json))
    add("GET", "/console/static/console.css", signed_out(pages.stylesheet))
    add("GET", "/console/static/console.js", signed_out(pages.script))
