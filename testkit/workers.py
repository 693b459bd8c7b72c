"""Helpers to run the real worker (run_workers.py) and a loopback image server in tests and
benchmarks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from config import Settings
from config.settings import settings_to_env

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ImageServer:
    """Serves test images on 127.0.0.1 and counts the requests per path."""

    routes: dict[str, web.Response | bytes] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if request.path.startswith("/held/"):
            await self.hold.wait()
        route = self.routes.get(request.path.removeprefix("/held"))
        if route is None:
            return web.Response(status=404, text="not found")
        if isinstance(route, bytes):
            return web.Response(body=route, content_type="image/jpeg")
        return web.Response(body=route.body, status=route.status, headers=dict(route.headers))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return self.base_url + path


class WorkerProcess:
    """run_workers.py in a subprocess, with the test's settings as its environment."""

    def __init__(self, settings: Settings, *args: str, extra_env: dict[str, str] | None = None):
        env = {**os.environ, **settings_to_env(settings), **(extra_env or {})}
        env["LOG_FORMAT"] = "json"
        self.log_path = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "run_workers.py"), "--metrics-port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self._log.close()


def run_command(
    settings: Settings,
    module: str,
    *args: str,
    extra_env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` (compressor.gc, compressor.reprocess, compressor.dlq, …)
    configured by `settings`, its output captured; bounded at two minutes."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **settings_to_env(settings), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )
