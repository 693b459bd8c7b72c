"""Prometheus metrics of one API process (each process of `--workers N` has its own)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.cache = Counter(
            "product_cache_lookups_total",
            "Product cache lookups by result",
            ["result"],
            registry=self.registry,
        )
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
        # labels() validates and locks on every call; a request needs its children only once.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._cache_children: dict[str, Any] = {}

    def observe_request(
        self, method: str, route: str, status: int, duration_s: float, cache: str | None
    ) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(duration_s)
        if cache:
            child = self._cache_children.get(cache)
            if child is None:
                child = self._cache_children[cache] = self.cache.labels(cache)
            child.inc()
