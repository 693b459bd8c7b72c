"""The soak's report: requests by outcome, latency per operation and per kind of fault, and the
headline counts, from made-up attempts."""

from __future__ import annotations

from testkit.soak.load import Attempt
from testkit.soak.report import NO_FAULT, build_report, render

ATTEMPTS = [
    Attempt(1.0, "get", 200, None, 0.010),
    Attempt(2.0, "get", 200, None, 0.020),
    Attempt(11.0, "get", 503, None, 0.500),
    Attempt(12.0, "create", None, "ClientConnectorError", 0.001),
    Attempt(13.0, "create", 201, None, 0.050),
]
WINDOWS = [{"kind": "restart_postgres", "start_s": 10.0, "end_s": 20.0}]


def report(violations: list[str] | None = None) -> dict:
    return build_report(
        seed=4,
        duration_s=30,
        windows=WINDOWS,
        attempts=ATTEMPTS,
        counts={"duplicates": 0, "lost": 1, "missing_objects": 2, "leaks": 0},
        violations=violations or [],
        extra={"images_processed": 3},
    )


def test_requests_are_counted_by_operation_and_outcome():
    assert report()["requests_by_outcome"] == {
        "create": {"201": 1, "ClientConnectorError": 1},
        "get": {"200": 2, "503": 1},
    }


def test_latency_covers_answered_attempts_per_operation_and_per_kind_of_fault():
    figures = report()
    assert figures["latency"]["get"] == {"n": 3, "p50_ms": 20.0, "p99_ms": 500.0}
    assert figures["latency"]["create"]["n"] == 1
    by_fault = figures["latency_by_fault"]
    assert by_fault[NO_FAULT]["get"]["n"] == 2
    assert by_fault["restart_postgres"]["get"]["p99_ms"] == 500.0
    assert figures["faults_by_kind"] == {"restart_postgres": 1}


def test_the_headline_counts_and_the_verdict():
    figures = report()
    assert (figures["duplicates"], figures["lost"], figures["leaks"]) == (0, 3, 0)
    assert figures["passed"]
    assert "PASSED" in render(figures)
    failed = report(["product 1 was created, and is gone"])
    assert not failed["passed"]
    assert "product 1 was created, and is gone" in render(failed)
