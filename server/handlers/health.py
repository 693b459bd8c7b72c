"""GET /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from db import outbox
from server.keys import CACHE, DB, METRICS, RELAY

CHECK_TIMEOUT_S = 1.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database_ok(request: web.Request) -> bool:
    try:
        await asyncio.wait_for(request.app[DB].fetchval("SELECT 1"), CHECK_TIMEOUT_S)
    except Exception:
        return False
    return True


async def readyz(request: web.Request) -> web.Response:
    checks = dict(
        zip(
            ("postgres", "redis", "kafka"),
            await asyncio.gather(
                _database_ok(request), request.app[CACHE].ping(), request.app[RELAY].kafka_ready()
            ),
            strict=True,
        )
    )
    down = [name for name, ok in checks.items() if not ok]
    if down:
        return web.json_response(
            {"status": "error", "message": f"unavailable: {', '.join(down)}", "details": checks},
            status=503,
        )
    return web.json_response({"status": "ok", "details": checks})


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    try:
        backlog = await asyncio.wait_for(outbox.backlog(request.app[DB]), CHECK_TIMEOUT_S)
        registry.outbox_backlog.set(backlog)
    except Exception:
        registry.outbox_backlog.set(float("nan"))
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
