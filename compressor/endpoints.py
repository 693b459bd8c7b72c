"""The worker's own HTTP server: /metrics for Prometheus, /healthz for the orchestrator.

`async with WorkerEndpoints(...)`: listening inside, closed on the way out. The gauges that
describe the moment (queue depths, busy slots, jobs in flight) are read at each scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol, Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from compressor.metrics import WorkerMetrics
from compressor.stages import Stage

log = logging.getLogger("compressor")


class ConsumerState(Protocol):
    @property
    def inflight_jobs(self) -> int: ...

    @property
    def healthy(self) -> bool: ...


class WorkerEndpoints:
    def __init__(
        self,
        metrics: WorkerMetrics,
        stages: Mapping[str, Stage],
        consumer: ConsumerState,
        *,
        host: str,
        port: int,
    ) -> None:
        self.metrics = metrics
        self.stages = stages
        self.consumer = consumer
        self.host = host
        self.port = port  # 0 picks a free one: the one chosen is here once listening
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:
            await self.close()
            raise
        if self._runner.addresses:
            self.port = self._runner.addresses[0][1]
        log.info("worker.metrics_listening", extra={"host": self.host, "port": self.port})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        for name, stage in self.stages.items():
            self.metrics.queue_depth.labels(name).set(stage.waiting)
            self.metrics.stage_busy.labels(name).set(stage.active)
        self.metrics.inflight_jobs.set(self.consumer.inflight_jobs)
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _health(self, request: web.Request) -> web.Response:
        if self.consumer.healthy:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)
