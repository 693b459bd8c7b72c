"""The pipeline page's numbers: the worker's /metrics (WORKER_METRICS_HOST:WORKER_METRICS_PORT)
and the worker group's consumer lag per partition of the jobs topic, from Kafka.

Rates (images/s) need two samples: the previous scrape of this API process is kept, so each
refresh of the page reports the rate since the one before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from config import Settings

SCRAPE_TIMEOUT_S = 2.0


def summarize(text: str) -> dict[str, Any]:
    """What the page shows of one scrape of the worker's metrics."""
    images = inflight = rebuilds = 0.0
    stage_sum: dict[str, float] = {}
    stage_count: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "worker_images_total":
                images += sample.value
            elif sample.name == "worker_inflight_jobs":
                inflight = sample.value
            elif sample.name == "worker_pool_rebuilds_total":
                rebuilds = sample.value
            elif sample.name == "worker_stage_seconds_sum":
                stage_sum[sample.labels["stage"]] = sample.value
            elif sample.name == "worker_stage_seconds_count":
                stage_count[sample.labels["stage"]] = sample.value
    latency_ms = {
        stage: round(1000 * stage_sum[stage] / count, 1)
        for stage, count in stage_count.items()
        if count and stage in stage_sum
    }
    return {
        "images_total": images,
        "jobs_in_flight": inflight,
        "pool_rebuilds": rebuilds,
        "stage_mean_ms": latency_ms,
    }


async def consumer_lag(settings: Settings) -> dict[str, int]:
    """Per partition of the jobs topic: end offset less the worker group's committed offset."""
    topic, group = settings.kafka_jobs_topic, settings.worker_group_id
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"] != 0:
        return {}
    partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    lag = {}
    for tp in sorted(partitions):
        done = committed.get(tp)
        lag[str(tp.partition)] = ends[tp] - (
            done.offset if done is not None and done.offset >= 0 else 0
        )
    return lag


@dataclass
class PipelineView:
    settings: Settings
    _last: tuple[float, float] | None = field(default=None)  # (monotonic time, images total)

    async def snapshot(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        url = f"http://{self.settings.worker_metrics_host}:{self.settings.worker_metrics_port}/metrics"
        view: dict[str, Any] = {"worker": url}
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)) as r:
                r.raise_for_status()
                view |= summarize(await r.text())
        except (aiohttp.ClientError, TimeoutError) as error:
            view["worker_error"] = f"{type(error).__name__}: {error}"
        now = time.monotonic()
        if "images_total" in view:
            if self._last is not None and now > self._last[0]:
                view["images_per_s"] = round(
                    (view["images_total"] - self._last[1]) / (now - self._last[0]), 2
                )
            self._last = (now, view["images_total"])
        view["lag"] = await consumer_lag(self.settings)
        return view
