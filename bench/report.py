"""Writes bench/results/report.md from the JSON files the benchmarks wrote in bench/results/.

Targets from issue 5 are marked met / not met; a missed target never fails (exit status 0
unless the report cannot be written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

COMPRESS_TARGET = 2.0  # 12 MP JPEG, project vs naive, same interpreter
POOL_TARGET = 1.8  # images/s, 2 processes vs 1


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mark(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value >= target else "not met"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def api_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## GET /products/{id}: cache hit vs miss", ""]
    if data is None:
        return [*lines, "No results (bench/results/api.json is missing).", ""]
    lines += [
        f"Real API (`run_api.py`, one process) on the real stack, {data['rounds']} rounds each,"
        " one kept-alive loopback connection; each miss round deletes the Redis key outside"
        " the timed region.",
        "",
        "| case | median (µs) |",
        "|---|---:|",
        f"| cache hit | {_num(data['hit_median_us'], '{:.0f}')} |",
        f"| cache miss | {_num(data['miss_median_us'], '{:.0f}')} |",
        f"| **miss / hit** | **{_num(data['miss_over_hit'])}×** |",
        "",
    ]
    return lines


def compress_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Compression: `compress()` vs the naive way", ""]
    if data is None:
        return [*lines, "No results (bench/results/compress.json is missing).", ""]
    lines += [
        f"Options: `{data.get('options', '')}`. Naive: open, `exif_transpose` on the full"
        " image, LANCZOS `resize`, save. Medians, one core, same interpreter.",
        "",
        "| image | output | project (ms) | naive (ms) | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for name, entry in data.get("images", {}).items():
        size = "×".join(str(v) for v in entry.get("output_size", []))
        lines.append(
            f"| {name} | {size} | {_num(entry.get('project_ms'), '{:.1f}')}"
            f" | {_num(entry.get('naive_ms'), '{:.1f}')} | {_num(entry.get('speedup'))}× |"
        )
    pool = data.get("pool", {})
    lines += [
        "",
        f"Pool ({pool.get('image', '?')}, {pool.get('tasks', '?')} images per pool size):",
        "",
        "| processes | images/s |",
        "|---:|---:|",
    ]
    for key, value in pool.items():
        if key.startswith("images_per_s_"):
            lines.append(f"| {key.removeprefix('images_per_s_')} | {_num(value, '{:.1f}')} |")
    lines.append(f"| **scaling** | **{_num(pool.get('scaling'))}×** |")
    lines.append("")
    return lines


def targets_section(compress: dict[str, Any] | None) -> list[str]:
    speedup = pool = None
    if compress is not None:
        speedup = compress.get("images", {}).get("jpeg-12mp", {}).get("speedup")
        pool = compress.get("pool", {}).get("scaling")
    rows = [
        ("12 MP JPEG: compress vs naive, same interpreter", f"≥ {COMPRESS_TARGET}×", speedup),
        ("Pool scaling, 1 → 2 processes", f"≥ {POOL_TARGET}×", pool),
    ]
    targets = {rows[0][0]: COMPRESS_TARGET, rows[1][0]: POOL_TARGET}
    lines = [
        "## Targets (issue 5)",
        "",
        "| target | wanted | measured | status |",
        "|---|---|---:|---|",
    ]
    for name, wanted, value in rows:
        lines.append(f"| {name} | {wanted} | {_num(value)}× | {_mark(value, targets[name])} |")
    lines += [
        "| Cache-hit GET ≥ 0.6× /healthz rate (wrk) | ≥ 0.6× | – | not measured |",
        "| p99 ≤ 3× p50 under load | ≤ 3× | – | not measured |",
        "| vs plain Pillow (bench/.venv-pillow) | ≥ 3.5× | – | not measured |",
        "| Pipeline vs compress-only rate | ≥ 0.85× | – | not measured |",
        "",
    ]
    return lines


def main() -> int:
    api, compress = _load("api"), _load("compress")
    quick = any(d.get("quick") for d in (api, compress) if d)
    lines = [
        "# Benchmark report",
        "",
        "Timings are medians from one run on a shared machine; read the ratios, which were"
        " measured side by side in the same run."
        + (" Quick mode (BENCH_QUICK=1)." if quick else ""),
        "",
        *api_section(api),
        *compress_section(compress),
        *targets_section(compress),
    ]
    out = RESULTS / "report.md"
    out.write_text("\n".join(lines))
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
