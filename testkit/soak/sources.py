"""The image sources of the soak: a loopback server that is sometimes slow, sometimes answers
5xx, sometimes gone (not listening at all), on a seeded schedule (schedule.plan_sources), plus a
few 5xx answers at random when healthy. One path is missing for good (a 404: a permanent
failure, which must fail its image at once rather than dead-letter its job)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from testkit.imagegen import sample_images
from testkit.soak.schedule import SourceMode

HOST = "127.0.0.1"
SLOW_S = (1.0, 4.0)
RANDOM_ERROR_RATE = 0.02
VARIANTS = 40  # each image under this many URLs (?v=N): distinct sources, shared bytes


@dataclass
class FlakySources:
    images: dict[str, tuple[bytes, str]] = field(default_factory=sample_images)
    seed: int = 0
    mode: SourceMode = SourceMode.OK
    hits: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _rng: random.Random = field(default_factory=random.Random)
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def urls(self) -> list[str]:
        """What clients put in products: every image under several URLs, and a missing one."""
        found = [f"{self.origin}/img/{name}?v={v}" for name in self.images for v in range(VARIANTS)]
        return [*found, f"{self.origin}/img/missing.jpg"]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        self.hits[str(mode)] += 1
        if mode is SourceMode.GONE and request.transport is not None:
            # A kept-alive connection from before the listener closed: cut it as a dead host
            # would (the client sees a reset, a transient failure).
            request.transport.abort()
            return web.Response(status=503)
        if mode is SourceMode.SLOW:
            await asyncio.sleep(self._rng.uniform(*SLOW_S))
        if mode is SourceMode.ERRORS or self._rng.random() < RANDOM_ERROR_RATE:
            return web.Response(status=503, text="unavailable")
        found = self.images.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="not found")
        body, content_type = found
        return web.Response(body=body, content_type=content_type)

    async def start(self) -> None:
        self._rng = random.Random(f"source-answers-{self.seed}")
        app = web.Application()
        app.router.add_get("/img/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()
        self.port = self._runner.addresses[0][1]

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await self._site.start()

    async def set_mode(self, mode: SourceMode) -> None:
        """GONE closes the listening socket (connections are refused); leaving it listens again
        on the same port."""
        if mode is self.mode:
            return
        was, self.mode = self.mode, mode
        if mode is SourceMode.GONE and self._site is not None:
            await self._site.stop()
            self._site = None
        elif was is SourceMode.GONE:
            await self._listen()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
