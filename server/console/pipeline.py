"""The pipeline page's numbers: every worker supervisor's /metrics (CONSOLE_WORKER_METRICS, by
default WORKER_METRICS_HOST:WORKER_METRICS_PORT), each shown and summed, and the worker group's
consumer lag per partition of the jobs topic, from Kafka.

Rates (images/s) need two samples: the previous scrape of this API process is kept, so each
refresh of the page reports the rate since the one before; a worker that restarted (its counter
went back) or that stopped or started answering in between gives no rate for that refresh,
rather than a false one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from config import Settings

SCRAPE_TIMEOUT_S = 2.0


@dataclass
class Scrape:
    """What the page uses of one worker's metrics."""

    images_total: float = 0.0
    jobs_in_flight: float = 0.0
    pool_rebuilds: float = 0.0
    stage_sum: dict[str, float] = field(default_factory=dict)
    stage_count: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str) -> Scrape:
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "worker_images_total":
                # Images finished, done or failed: a transient failure is retried, not finished.
                if sample.labels.get("outcome") != "failed_transient":
                    scrape.images_total += sample.value
            elif sample.name == "worker_inflight_jobs":
                scrape.jobs_in_flight = sample.value
            elif sample.name == "worker_pool_rebuilds_total":
                scrape.pool_rebuilds = sample.value
            elif sample.name == "worker_stage_seconds_sum":
                scrape.stage_sum[sample.labels["stage"]] = sample.value
            elif sample.name == "worker_stage_seconds_count":
                scrape.stage_count[sample.labels["stage"]] = sample.value
    return scrape


def summarize(scrapes: Sequence[Scrape]) -> dict[str, Any]:
    """The workers' numbers together: totals, and each stage's mean latency over all of them
    (weighted by how many times each ran it)."""
    stage_sum: dict[str, float] = {}
    stage_count: dict[str, float] = {}
    for scrape in scrapes:
        for stage, count in scrape.stage_count.items():
            stage_count[stage] = stage_count.get(stage, 0.0) + count
            stage_sum[stage] = stage_sum.get(stage, 0.0) + scrape.stage_sum.get(stage, 0.0)
    return {
        "images_total": sum(s.images_total for s in scrapes),
        "jobs_in_flight": sum(s.jobs_in_flight for s in scrapes),
        "pool_rebuilds": sum(s.pool_rebuilds for s in scrapes),
        "stage_mean_ms": {
            stage: round(1000 * stage_sum[stage] / count, 1)
            for stage, count in sorted(stage_count.items())
            if count
        },
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


async def scrape(http: aiohttp.ClientSession, address: str) -> Scrape | str:
    """One worker's metrics, or why they could not be read."""
    url = f"http://{address}/metrics"
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)) as r:
            r.raise_for_status()
            return parse_metrics(await r.text())
    except (aiohttp.ClientError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"


@dataclass
class PipelineView:
    settings: Settings
    # (monotonic time, each answering worker's images total) at the previous refresh.
    _last: tuple[float, dict[str, float]] | None = field(default=None)

    async def snapshot(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        addresses = self.settings.worker_metrics_addresses
        scraped = await asyncio.gather(*(scrape(http, a) for a in addresses))
        workers: list[dict[str, Any]] = []
        answering: dict[str, Scrape] = {}
        for address, result in zip(addresses, scraped, strict=True):
            worker: dict[str, Any] = {"address": f"http://{address}/metrics"}
            if isinstance(result, str):
                worker["error"] = result
            else:
                answering[address] = result
                worker |= {
                    "images_total": result.images_total,
                    "jobs_in_flight": result.jobs_in_flight,
                    "pool_rebuilds": result.pool_rebuilds,
                }
            workers.append(worker)
        view: dict[str, Any] = {"workers": workers, **summarize(list(answering.values()))}
        totals = {a: s.images_total for a, s in answering.items()}
        now = time.monotonic()
        if self._last is not None and (rate := images_rate(self._last, (now, totals))) is not None:
            view["images_per_s"] = rate
        self._last = (now, totals)
        view["lag"] = await consumer_lag(self.settings)
        return view


def images_rate(
    before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]
) -> float | None:
    """Images per second between two refreshes, when the same workers answered both and no
    counter went back."""
    (t0, totals0), (t1, totals1) = before, after
    if t1 <= t0 or not totals1 or totals0.keys() != totals1.keys():
        return None
    if any(totals1[a] < totals0[a] for a in totals1):
        return None
    return round((sum(totals1.values()) - sum(totals0.values())) / (t1 - t0), 2)
