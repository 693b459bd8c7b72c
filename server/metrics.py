"""Prometheus metrics of one API process (each process of `--workers N` has its own).

The per-request metrics (the request counter, the latency histogram, the cache lookups) are
plain numbers this process adds to and a collector turns into samples at scrape time:
prometheus_client's own metrics take a lock per increment and per observation (~3 µs a
request together, against ~0.5 µs here). The API runs one event loop per process, so nothing
else writes these numbers meanwhile.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_LABELS = ("method", "route", "status")
_INF = float("inf")


class _RequestStats:
    """One (method, route, status)'s requests: how many, their total and their latency buckets
    (non-cumulative; the last one is +Inf)."""

    __slots__ = ("buckets", "count", "labels", "total_s")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.count = 0
        self.total_s = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)


class _RequestCollector(Collector):
    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("http_requests", "HTTP requests", labels=_LABELS)
        latency = HistogramMetricFamily(
            "http_request_duration_seconds", "HTTP request latency", labels=_LABELS
        )
        for stats in list(self.metrics._requests.values()):
            requests.add_metric(stats.labels, stats.count)
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS_S, _INF), stats.buckets, strict=True):
                cumulative += count
                buckets.append((_bound_text(bound), cumulative))
            latency.add_metric(stats.labels, buckets, stats.total_s)
        lookups = CounterMetricFamily(
            "product_cache_lookups", "Product cache lookups by result", labels=("result",)
        )
        for result, count in list(self.metrics._cache_lookups.items()):
            lookups.add_metric((result,), count)
        yield requests
        yield latency
        yield lookups


def _bound_text(bound: float) -> str:
    # As prometheus_client writes bucket bounds: 0.005, 1.0, +Inf.
    return "+Inf" if bound == _INF else repr(float(bound))


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests: dict[tuple[str, str, int], _RequestStats] = {}
        self._cache_lookups: dict[str, int] = {}
        self.registry.register(_RequestCollector(self))
        self.outbox_backlog = Gauge(
            "outbox_backlog",
            "Jobs waiting in the outbox (read at scrape time)",
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "outbox_published_total",
            "Jobs published to Kafka by this process's relay",
            registry=self.registry,
        )

    def observe_request(
        self, method: str, route: str, status: int, duration_s: float, cache: str | None
    ) -> None:
        key = (method, route, status)
        stats = self._requests.get(key)
        if stats is None:
            stats = self._requests[key] = _RequestStats((method, route, str(status)))
        stats.count += 1
        stats.total_s += duration_s
        stats.buckets[bisect_left(LATENCY_BUCKETS_S, duration_s)] += 1
        if cache:
            self._cache_lookups[cache] = self._cache_lookups.get(cache, 0) + 1
