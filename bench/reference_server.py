"""Serving a benchmark's reference server: the one way, so the servers compared differ only in
their routes. Imports nothing but aiohttp and uvloop, so it also runs in the Redis clients'
own virtualenv (bench/.venv-redis)."""

from __future__ import annotations

import asyncio

import uvloop
from aiohttp import web


def serve(app: web.Application, host: str, port: int) -> None:
    """Runs `app` as the API runs (uvloop, no access log) until SIGINT/SIGTERM."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        app, host=host, port=port, access_log=None, print=None, loop=loop, shutdown_timeout=5
    )
