"""Serving one of the demo's small apps on 127.0.0.1 (the sample photos, the webhook receiver)."""

from __future__ import annotations

from aiohttp import web

HOST = "127.0.0.1"


async def listen(app: web.Application, port: int) -> web.AppRunner:
    """Serves `app` on HOST:port (0: a free one, read back from the runner's addresses);
    raises OSError (errno EADDRINUSE) when the port is taken, leaving nothing running."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port, reuse_address=True).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
