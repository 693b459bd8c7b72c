"""The soak's report: plain JSON-able figures (what `--report PATH` writes) and their text."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from testkit.loadgen import percentile
from testkit.soak.load import Attempt

NO_FAULT = "no_fault"


def outcomes(attempts: Iterable[Attempt]) -> dict[str, dict[str, int]]:
    """Attempts by operation and outcome (an HTTP status, or the exception's type)."""
    counted: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        counted[a.operation][str(a.status) if a.status is not None else a.error or "error"] += 1
    return {op: dict(sorted(c.items())) for op, c in sorted(counted.items())}


def _latency(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)

    def ms(pct: float) -> float | None:
        value = percentile(ordered, pct)
        return None if value is None else round(value * 1000, 1)

    return {"n": len(ordered), "p50_ms": ms(50), "p99_ms": ms(99)}


def latency(attempts: Iterable[Attempt]) -> dict[str, dict[str, float | int | None]]:
    """p50 and p99 per operation, of the attempts that got an HTTP answer."""
    by_op: dict[str, list[float]] = defaultdict(list)
    for a in attempts:
        if a.status is not None:
            by_op[a.operation].append(a.latency_s)
    return {op: _latency(values) for op, values in sorted(by_op.items())}


def fault_of(at_s: float, windows: Sequence[Mapping[str, Any]]) -> str:
    for window in windows:
        if window["start_s"] <= at_s <= window["end_s"]:
            return str(window["kind"])
    return NO_FAULT


def latency_by_fault(
    attempts: Iterable[Attempt], windows: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """The same figures for the attempts sent during each kind of fault, and outside any."""
    grouped: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        grouped[fault_of(a.at_s, windows)].append(a)
    return {kind: latency(group) for kind, group in sorted(grouped.items())}


def build_report(
    *,
    seed: int,
    duration_s: float,
    windows: Sequence[Mapping[str, Any]],
    attempts: Sequence[Attempt],
    counts: Mapping[str, int],
    violations: Sequence[str],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    by_kind = Counter(str(w["kind"]) for w in windows)
    return {
        "seed": seed,
        "duration_s": duration_s,
        "passed": not violations,
        "faults_by_kind": dict(sorted(by_kind.items())),
        "faults": list(windows),
        "requests": len(attempts),
        "requests_by_outcome": outcomes(attempts),
        "latency": latency(attempts),
        "latency_by_fault": latency_by_fault(attempts, windows),
        "duplicates": counts.get("duplicates", 0),
        "lost": counts.get("lost", 0) + counts.get("missing_objects", 0),
        "leaks": counts.get("leaks", 0),
        "counts": dict(sorted(counts.items())),
        **extra,
        "violations": list(violations),
    }


def _row(op: str, figures: Mapping[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"    {op:<10} n {figures['n']:>6}  p50 {ms(figures['p50_ms']):>8} ms"
        f"  p99 {ms(figures['p99_ms']):>8} ms"
    )


def render(report: Mapping[str, Any]) -> str:
    lines = [
        f"soak: seed {report['seed']}, {report['duration_s']:g} s of load: "
        + ("PASSED" if report["passed"] else f"FAILED ({len(report['violations'])} violations)"),
        "faults: " + (", ".join(f"{k} {v}" for k, v in report["faults_by_kind"].items()) or "none"),
        f"requests: {report['requests']}",
    ]
    for op, outcome in report["requests_by_outcome"].items():
        lines.append(f"    {op:<10} " + "  ".join(f"{k}: {v}" for k, v in outcome.items()))
    lines.append("latency (attempts answered):")
    lines += [_row(op, figures) for op, figures in report["latency"].items()]
    lines.append("latency by fault:")
    for kind, ops in report["latency_by_fault"].items():
        lines.append(f"  {kind}")
        lines += [_row(op, figures) for op, figures in ops.items()]
    for key in ("images_processed", "uploads", "dead_letters", "replayed", "gc_deleted"):
        if key in report:
            lines.append(f"{key.replace('_', ' ')}: {report[key]}")
    lines.append(
        f"duplicates: {report['duplicates']}  lost: {report['lost']}  leaks: {report['leaks']}"
    )
    if report["violations"]:
        lines.append("violations:")
        lines += [f"  - {v}" for v in report["violations"][:50]]
        if len(report["violations"]) > 50:
            lines.append(f"  … and {len(report['violations']) - 50} more")
    return "\n".join(lines)
