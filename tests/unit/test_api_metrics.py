"""The API's per-request metrics as Prometheus reads them: counts, cumulative latency buckets
(a bound includes itself) and cache lookups by result."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import ApiMetrics


def samples(metrics: ApiMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def test_requests_are_counted_by_method_route_and_status():
    metrics = ApiMetrics()
    for _ in range(3):
        metrics.observe_request("GET", "/products/{product_id}", 200, 0.0004, "HIT")
    metrics.observe_request("POST", "/products", 201, 0.02, None)
    got = samples(metrics)
    get = labels(method="GET", route="/products/{product_id}", status="200")
    post = labels(method="POST", route="/products", status="201")
    assert got[("http_requests_total", get)] == 3
    assert got[("http_requests_total", post)] == 1
    assert got[("http_request_duration_seconds_count", get)] == 3
    assert abs(got[("http_request_duration_seconds_sum", post)] - 0.02) < 1e-12


def test_latency_buckets_are_cumulative_and_a_bound_includes_itself():
    metrics = ApiMetrics()
    for duration_s in (0.0004, 0.001, 0.0011, 7.0):
        metrics.observe_request("GET", "/healthz", 200, duration_s, None)
    got = samples(metrics)

    def bucket(le: str) -> float:
        key = labels(le=le, method="GET", route="/healthz", status="200")
        return got[("http_request_duration_seconds_bucket", key)]

    assert bucket("0.0005") == 1
    assert bucket("0.001") == 2  # 0.001 itself is in
    assert bucket("0.0025") == 3
    assert bucket("5.0") == 3
    assert bucket("+Inf") == 4


def test_cache_lookups_are_counted_by_result():
    metrics = ApiMetrics()
    for cache in ("HIT", "HIT", "MISS", None):
        metrics.observe_request("GET", "/products/{product_id}", 200, 0.001, cache)
    got = samples(metrics)
    assert got[("product_cache_lookups_total", labels(result="HIT"))] == 2
    assert got[("product_cache_lookups_total", labels(result="MISS"))] == 1
