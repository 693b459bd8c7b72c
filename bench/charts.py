"""Draws PNG charts of bench/results/*.json into bench/results/ (embedded by report.md).

Run under ``bench/.venv-pillow/bin/python``: matplotlib lives only in that virtualenv, never in
the project's. A chart whose JSON is missing is skipped (and a stale PNG of it removed).

    cache.png        GET /products/{id}: cache hit vs miss median latency (api.json)
    compression.png  compress() vs naive per image (compress.json) and Pillow-SIMD vs plain
                     Pillow on the 12 MP JPEG (pillow.json)
    pipeline.png     the worker pipeline's images/s vs compress-only (pipeline.json)
    throughput.png   requests/s and p50/p99 per scenario next to /healthz (throughput.json)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

RESULTS = Path(__file__).resolve().parent / "results"

BLUE, ORANGE, GREEN, GREY, RED = "#4C72B0", "#DD8452", "#55A868", "#8C8C8C", "#C44E52"


def _load(name: str) -> dict[str, Any] | None:
    try:
        return json.loads((RESULTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _figure(width: float = 7.0, height: float = 4.0, ncols: int = 1) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), dpi=110, layout="constrained")
    return fig, axes


def _style(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _label_bars(ax: Axes, bars: Any, fmt: str = "{:.0f}") -> None:
    ax.bar_label(bars, labels=[fmt.format(b.get_height()) for b in bars], padding=2, fontsize=8)
    ax.margins(y=0.15)


def cache_chart(api: dict[str, Any]) -> Figure:
    fig, ax = _figure(5.0, 3.6)
    values = [api["hit_median_us"], api["miss_median_us"]]
    bars = ax.bar(["cache hit", "cache miss"], values, color=[GREEN, ORANGE], width=0.55)
    _label_bars(ax, bars, "{:.0f} µs")
    _style(ax, f"GET /products/{{id}}: miss = {api['miss_over_hit']:.2f}× hit", "median (µs)")
    return fig


def compression_chart(compress: dict[str, Any] | None, pillow: dict[str, Any] | None) -> Figure:
    panels = [p for p in (compress, pillow) if p is not None]
    fig, axes = _figure(6.0 * len(panels), 4.0, ncols=len(panels))
    axes = list(axes) if len(panels) > 1 else [axes]
    if compress is not None:
        ax = axes.pop(0)
        names = list(compress.get("images", {}))
        width = 0.38
        xs = range(len(names))
        entries = [compress["images"][n] for n in names]
        project = ax.bar(
            [x - width / 2 for x in xs],
            [e.get("project_ms", 0) for e in entries],
            width,
            label="compress()",
            color=BLUE,
        )
        naive = ax.bar(
            [x + width / 2 for x in xs],
            [e.get("naive_ms", 0) for e in entries],
            width,
            label="naive",
            color=GREY,
        )
        _label_bars(ax, project)
        _label_bars(ax, naive)
        ax.set_xticks(list(xs), names, fontsize=9)
        ax.legend(frameon=False, fontsize=9)
        _style(ax, "compress() vs naive, Pillow-SIMD, one core", "median (ms, lower is better)")
    if pillow is not None:
        ax = axes.pop(0)
        simd, plain = pillow["simd"], pillow["plain"]
        labels = [
            "Pillow-SIMD\ncompress()",
            "Pillow-SIMD\nnaive",
            f"Pillow {plain['pil_version']}\ncompress()",
            f"Pillow {plain['pil_version']}\nnaive",
        ]
        values = [simd["compress_ms"], simd["naive_ms"], plain["compress_ms"], plain["naive_ms"]]
        bars = ax.bar(labels, values, color=[BLUE, GREY, ORANGE, RED], width=0.6)
        _label_bars(ax, bars)
        ax.tick_params(axis="x", labelsize=9)
        _style(
            ax,
            f"12 MP JPEG: SIMD compress() is {pillow['speedup_over_plain_naive']:.1f}×"
            " plain-Pillow naive",
            "median (ms, lower is better)",
        )
    return fig


def pipeline_chart(pipeline: dict[str, Any]) -> Figure:
    fig, ax = _figure(5.5, 3.8)
    values = [pipeline["pipeline_images_per_s"], pipeline["compress_only_images_per_s"]]
    bars = ax.bar(
        [
            "pipeline\n(Kafka → download →\ncompress → store → DB)",
            "compress only\n(same pool size)",
        ],
        values,
        color=[BLUE, GREY],
        width=0.55,
    )
    _label_bars(ax, bars, "{:.1f}/s")
    target = 0.85 * pipeline["compress_only_images_per_s"]
    ax.axhline(target, color=RED, linestyle="--", linewidth=1)
    ax.annotate(
        "target 0.85×",
        (0.5, target),
        xytext=(0, 3),
        textcoords="offset points",
        color=RED,
        fontsize=8,
        ha="center",
    )
    _style(
        ax,
        f"{pipeline['images']} × 12 MP, {pipeline['processes']} processes:"
        f" {pipeline['ratio']:.2f}× compress-only",
        "images/s (higher is better)",
    )
    return fig


def throughput_chart(throughput: dict[str, Any]) -> Figure:
    scenarios = throughput["scenarios"]
    names = [s["name"] for s in scenarios]
    fig, (left, right) = _figure(11.0, 4.0, ncols=2)
    colours = [GREY if n == "healthz" else BLUE for n in names]
    bars = left.bar(names, [s["rps"] for s in scenarios], color=colours, width=0.6)
    left.bar_label(
        bars,
        labels=[f"{s['rps']:.0f}\n{s['ratio_to_healthz']:.2f}×" for s in scenarios],
        padding=2,
        fontsize=8,
    )
    left.margins(y=0.2)
    _style(left, "requests/s (and × /healthz)", "requests/s (higher is better)")
    width = 0.38
    xs = range(len(names))
    p50 = right.bar(
        [x - width / 2 for x in xs],
        [s["p50_ms"] for s in scenarios],
        width,
        label="p50",
        color=GREEN,
    )
    p99 = right.bar(
        [x + width / 2 for x in xs],
        [s["p99_ms"] for s in scenarios],
        width,
        label="p99",
        color=ORANGE,
    )
    _label_bars(right, p50, "{:.1f}")
    _label_bars(right, p99, "{:.1f}")
    right.set_xticks(list(xs), names)
    right.legend(frameon=False, fontsize=9)
    _style(right, "latency under load (p99/p50 target ≤ 3)", "ms (lower is better)")
    fig.suptitle(
        f"wrk, {throughput.get('connections', '?')} connections,"
        f" {throughput.get('duration_s', '?')} s per scenario",
        fontsize=11,
    )
    return fig


def charts() -> dict[str, Callable[[], Figure] | None]:
    api, compress, pillow = _load("api"), _load("compress"), _load("pillow")
    pipeline, throughput = _load("pipeline"), _load("throughput")
    return {
        "cache": (lambda: cache_chart(api)) if api else None,
        "compression": (
            (lambda: compression_chart(compress, pillow)) if compress or pillow else None
        ),
        "pipeline": (lambda: pipeline_chart(pipeline)) if pipeline else None,
        "throughput": (
            (lambda: throughput_chart(throughput))
            if throughput and throughput.get("scenarios")
            else None
        ),
    }


def main() -> int:
    failed = 0
    for name, draw in charts().items():
        path = RESULTS / f"{name}.png"
        path.unlink(missing_ok=True)
        if draw is None:
            continue
        try:
            fig = draw()
            fig.savefig(path)
            plt.close(fig)
        except Exception as exc:  # one broken chart must not cost the others
            print(f"charts: {name}.png failed: {exc!r}", file=sys.stderr)
            failed += 1
            continue
        print(f"chart: {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
