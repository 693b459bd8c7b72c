"""Writes bench/results/report.md from the JSON files the benchmarks wrote in bench/results/.

The project's performance targets (the *_TARGET thresholds below: compression and pool
speed-ups, pipeline efficiency, cache-hit throughput with and without the access layer, the hot
path's CPU per request against a bare aiohttp floor, tail latency) are marked met / not met / not measured; a missed target never fails (exit status 0 unless the report cannot be written).
The charts of bench/charts.py (run before this, under bench/.venv-pillow) are embedded when their
PNG exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report_images import measured_cell
from bench.report_images import section as images_section
from bench.report_images import target_rows as images_target_rows

RESULTS = Path(__file__).resolve().parent / "results"

COMPRESS_TARGET = 2.0  # 12 MP JPEG, project vs naive, same interpreter
POOL_TARGET = 1.8  # images/s, 2 processes vs 1
PLAIN_PILLOW_TARGET = 3.5  # 12 MP JPEG, Pillow-SIMD compress vs plain-Pillow naive
PIPELINE_TARGET = 0.85  # pipeline images/s vs compress-only, same processes
TJBENCH_TARGET = 0.9  # tjbench floor / compress time, one core
GET_HIT_TARGET = 0.6  # cache-hit GET requests/s vs /healthz (wrk)
WITH_KEY_TARGET = 0.9  # cache-hit GET with an API key vs the same GET with AUTH_MODE=off (wrk)
WITH_KEY_HEALTHZ_TARGET = 0.6  # cache-hit GET with an API key vs /healthz (wrk)
P99_TARGET = 3.0  # p99 / p50 under load, at most
# Server CPU µs per request against bench/floor_server.py's, at most (wrk, interleaved rounds).
HOT_LOCAL_TARGET = 1.3  # cache hit from the API process's own memory, every feature on
HOT_REDIS_TARGET = 2.0  # cache hit from Redis (LOCAL_CACHE_MAX_ITEMS=0)
# The in-process hit with live event streams open, against the same API without: at most.
EVENTS_TARGET = 1.05
# (key in hot_path.json, label, target or None) in the order of the hot-path table.
HOT_PATHS: list[tuple[str, str, float | None]] = [
    ("floor", "floor: bare aiohttp + uvloop, fixed body", None),
    (
        "deployed_hit",
        "API as deployed, in-process-tier hit: a user's key checked, access log on",
        HOT_LOCAL_TARGET,
    ),
    ("local_hit", "API, in-process-tier hit, `AUTH_MODE=off`, access log off", None),
    (
        "redis_hit",
        "API, Redis-tier hit (`LOCAL_CACHE_MAX_ITEMS=0`), `AUTH_MODE=off`, access log off",
        HOT_REDIS_TARGET,
    ),
    ("miss", "API, miss (PostgreSQL)", None),
    ("asyncpg", "floor + one bare asyncpg fetch of the row", None),
    ("events_hit", "API, in-process-tier hit, live event streams open", None),
]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mark(value: float | None, target: float, *, at_most: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "not met"


def _chart(name: str, alt: str) -> list[str]:
    """The Markdown image of bench/results/<name>.png, if bench/charts.py drew it."""
    return [f"![{alt}]({name}.png)", ""] if (RESULTS / f"{name}.png").exists() else []


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
        *_chart("cache", "GET by id: cache hit vs miss"),
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


def pillow_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Pillow-SIMD vs plain Pillow", ""]
    if data is None:
        return [*lines, "No results (bench/results/pillow.json is missing).", ""]
    simd, plain = data["simd"], data["plain"]
    lines += [
        "`bench/pillow_compare.py`, the same code and the same 12 MP photo JPEG (EXIF"
        f" orientation 6) under the project's `.venv` (Pillow-SIMD {simd['pil_version']}) and"
        f" `bench/.venv-pillow` (plain Pillow {plain['pil_version']}); medians of"
        f" {simd['rounds']} rounds, one core.",
        "",
        "| interpreter | compress() (ms) | naive (ms) | LANCZOS resize (ms) |",
        "|---|---:|---:|---:|",
    ]
    for label, entry in (("Pillow-SIMD", simd), ("plain Pillow", plain)):
        lines.append(
            f"| {label} {entry['pil_version']} | {_num(entry['compress_ms'], '{:.1f}')}"
            f" | {_num(entry['naive_ms'], '{:.1f}')} | {_num(entry['resize_ms'], '{:.1f}')} |"
        )
    lines += [
        "",
        "| speed-up of Pillow-SIMD `compress()` | |",
        "|---|---:|",
        f"| over plain-Pillow naive | **{_num(data['speedup_over_plain_naive'])}×** |",
        f"| over plain-Pillow `compress()` | {_num(data['speedup_over_plain_compress'])}× |",
        f"| (LANCZOS resize alone, SIMD vs plain) | {_num(data['resize_simd_over_plain'])}× |",
        "",
    ]
    floor = simd.get("tjbench")
    if floor:
        lines += [
            f"Physical floor from libjpeg-turbo's `tjbench` ({floor.get('version') or '?'}) on"
            " the same file: ½-scale decode"
            f" {_num(floor['decode_half_ms'], '{:.1f}')} ms + progressive q80 encode of the"
            f" output size {_num(floor['encode_ms'], '{:.1f}')} ms + SIMD resize"
            f" {_num(floor['resize_ms'], '{:.1f}')} ms = {_num(floor['floor_ms'], '{:.1f}')} ms,"
            f" against {_num(simd['compress_ms'], '{:.1f}')} ms for `compress()`:"
            f" **{_num(floor['fraction'])}** of the floor's speed.",
            "",
        ]
    else:
        lines += ["`tjbench` floor: not measured (libjpeg-turbo-progs is not installed).", ""]
    return [*lines, *_chart("compression", "compression: compress() vs naive, SIMD vs plain")]


def pipeline_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Worker pipeline end to end", ""]
    if data is None:
        return [*lines, "No results (bench/results/pipeline.json is missing).", ""]
    memory = data.get("memory", {})
    breakdown = data.get("breakdown", {})
    lines += [
        f"`run_workers.py --processes {data['processes']}` on {data['products']} products ×"
        f" {data['images'] // max(data['products'], 1)} images of 12 MP"
        f" ({data['source_bytes'] / 1e6:.1f} MB each) from a loopback server, local storage;"
        " the API in-process publishes the jobs through its outbox relay. The pipeline is timed"
        " by the worker's log, from the first job it receives to the last it finishes; end to"
        " end adds the time from the first POST (API and relay latency). Compress-only is a"
        " warmed pool of the same size on the same images, in the same run.",
        "",
        "| | images/s | seconds | × compress-only |",
        "|---|---:|---:|---:|",
        f"| **pipeline** (worker: first job received → last done)"
        f" | {_num(data['pipeline_images_per_s'], '{:.1f}')}"
        f" | {_num(data['pipeline_seconds'])} | **{_num(data['ratio'])}×** |",
        f"| end to end (first POST → all done)"
        f" | {_num(data.get('end_to_end_images_per_s'), '{:.1f}')}"
        f" | {_num(data.get('end_to_end_seconds'))} | {_num(data.get('end_to_end_ratio'))}× |",
        f"| compress only | {_num(data['compress_only_images_per_s'], '{:.1f}')}"
        f" | {_num(data['compress_only_seconds'])} | 1.00× |",
        "",
    ]
    if breakdown:
        lines += [
            "From the worker's log: first job received after"
            f" {_num(breakdown.get('first_job_received_s'), '{:.3f}')} s, last done after"
            f" {_num(breakdown.get('last_job_done_s'), '{:.3f}')} s; median per image: download"
            f" {_num(breakdown.get('median_downloaded_ms'), '{:.0f}')} ms, compress (with the"
            f" wait for a process) {_num(breakdown.get('median_compressed_ms'), '{:.0f}')} ms,"
            f" upload {_num(breakdown.get('median_uploaded_ms'), '{:.1f}')} ms. CPU during the"
            f" run: supervisor {_num(breakdown.get('supervisor_cpu_s'))} s, harness (API and"
            f" image server, same machine) {_num(breakdown.get('harness_cpu_s'))} s, of"
            f" {_num(data.get('end_to_end_seconds', 0) * data['processes'])} core-seconds"
            " (end to end).",
            "",
        ]
    if memory:
        lines += [
            f"Worker memory (RSS sampled every 100 ms, {memory.get('samples', '?')} samples):"
            f" idle {_num(memory.get('idle_total_rss_mib'), '{:.0f}')} MiB, peak"
            f" **{_num(memory.get('peak_total_rss_mib'), '{:.0f}')} MiB** in total.",
            "",
            "| process | pid | peak RSS (MiB) |",
            "|---|---:|---:|",
        ]
        for proc in memory.get("processes", []):
            lines.append(
                f"| {proc['role']} | {proc['pid']} | {_num(proc['peak_rss_mib'], '{:.0f}')} |"
            )
        lines.append("")
    return [*lines, *_chart("pipeline", "pipeline vs compress-only images/s")]


def _scenario(data: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for row in (data or {}).get("scenarios", []):
        if row.get("name") == name:
            return row
    return None


def _worst_p99_over_p50(data: dict[str, Any] | None) -> float | None:
    rows = [r for r in (data or {}).get("scenarios", []) if r.get("name") != "healthz"]
    return max((r["p99_over_p50"] for r in rows), default=None)


def throughput_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## API throughput under load", ""]
    if data is None or not data.get("scenarios"):
        return [*lines, "No results (bench/results/throughput.json is missing).", ""]
    lines += [
        f"`{data.get('tool', 'wrk')}`, {data.get('connections', '?')} connections,"
        f" {data.get('duration_s', '?')} s per scenario after an unmeasured"
        f" {data.get('warmup_s', '?')} s warm-up, each next to `/healthz` on the same"
        f" server in the same run (client and server pinned to separate cores:"
        f" {'yes' if data.get('pinned') else 'no'}).",
        "",
        "| scenario | requests/s | × /healthz | p50 (ms) | p99 (ms) | p99/p50 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["scenarios"]:
        errors = row.get("errors", 0)
        lines.append(
            f"| {row['name']} | {_num(row['rps'], '{:.0f}')}"
            f" | {_num(row['ratio_to_healthz'])}× | {_num(row['p50_ms'])}"
            f" | {_num(row['p99_ms'])} | {_num(row['p99_over_p50'])}"
            f" | {errors if not isinstance(errors, dict) else sum(errors.values())} |"
        )
    lines.append("")
    return [*lines, *_chart("throughput", "requests/s and latency per scenario")]


def access_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Access layer: cache-hit GET with an API key vs AUTH_MODE=off", ""]
    if data is None or not data.get("scenarios"):
        return [*lines, "No results (bench/results/access.json is missing).", ""]
    scenarios = data["scenarios"]
    lines += [
        f"Two APIs side by side in one run, on the same database and cache, pinned to the same"
        f" core (wrk on another: {'yes' if data.get('pinned') else 'no'}): AUTH_MODE=off, and"
        f" AUTH_MODE=api_key with RATE_LIMIT_READS={data.get('read_limit', '?')} (never reached:"
        " every GET answered 200), the default write limit and an admin key configured. `wrk`,"
        f" {data.get('connections', '?')} connections, {data.get('rounds', '?')} interleaved"
        f" rounds of {data.get('duration_s', '?')} s per scenario (order alternating) after an"
        f" unmeasured {data.get('warmup_s', '?')} s warm-up; the same 100 cached products, and"
        " the same request to both APIs, sending the seeded user's key (`-H 'Authorization:"
        " Bearer …'`), which AUTH_MODE=off ignores: the ratio is the access layer's cost. Ratios"
        " are medians of the per-round ratios.",
        "",
        "| scenario | requests/s | per round | p50 (ms) | p99 (ms) | server CPU µs/request |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, row in scenarios.items():
        rounds = ", ".join(f"{rps:.0f}" for rps in row.get("round_rps", []))
        lines.append(
            f"| {name} | {_num(row['rps'], '{:.0f}')} | {rounds} | {_num(row['p50_ms'])}"
            f" | {_num(row['p99_ms'])} | {_num(row.get('cpu_us_per_request'), '{:.1f}')} |"
        )
    key_off = ", ".join(f"{r:.2f}" for r in data.get("key_over_off_rounds", []))
    key_health = ", ".join(f"{r:.2f}" for r in data.get("key_over_healthz_rounds", []))
    lines += [
        "",
        f"- **with key / off: {_num(data.get('key_over_off'))}×** (target ≥ {WITH_KEY_TARGET}×;"
        f" rounds: {key_off})",
        f"- **with key / `/healthz`: {_num(data.get('key_over_healthz'))}×** (target ≥"
        f" {WITH_KEY_HEALTHZ_TARGET}×; rounds: {key_health})",
        f"- the same from server CPU per request (off's µs over with-key's; steadier when a round"
        f" loses the core): with key / off {_num(data.get('key_over_off_cpu'))}×, with key /"
        f" `/healthz` {_num(data.get('key_over_healthz_cpu'))}×",
        "",
    ]
    create = data.get("create")
    if create:
        share = create.get("refused_share")
        lines += [
            f"Write path with the limits on: `POST /products` (no images) with one key"
            f" (RATE_LIMIT_WRITES={create.get('limit', '?')}), {data.get('duration_s', '?')} s:"
            f" {_num(create.get('rps'), '{:.0f}')} answers/s, of which"
            f" **{_num(create.get('admitted_per_s'), '{:.1f}')} creates/s admitted** (201; a"
            " period's worth may come at once, so a short run admits a little more than the"
            f" rate) and **{_num(None if share is None else share * 100, '{:.1f}')} % refused**"
            f" (429); p50 {_num(create.get('p50_ms'))} ms, p99 {_num(create.get('p99_ms'))} ms."
            " Answers by status: "
            + ", ".join(f"{status}: {n}" for status, n in create.get("statuses", {}).items())
            + ".",
            "",
        ]
    return lines


def _rounds(values: list[float] | None) -> str:
    return ", ".join(f"{value:.2f}" for value in values or [])


def _profile_table(entries: list[dict[str, Any]], *, under: bool = False) -> list[str]:
    """Rows of a profile's top functions; with `under`, the Python frame a native one was most
    often called from."""

    def code(name: Any) -> str:
        return "`" + str(name).replace("|", "\\|") + "`" if name else ""

    lines = [
        "| # | function | share | samples |" + (" under (Python) |" if under else ""),
        "|---:|---|---:|---:|" + ("---|" if under else ""),
    ]
    for rank, entry in enumerate(entries, 1):
        lines.append(
            f"| {rank} | {code(entry.get('function', '?'))}"
            f" | {_num(entry.get('share', 0) * 100, '{:.1f}')} % | {entry.get('samples', '?')} |"
            + (f" {code(entry.get('under'))} |" if under else "")
        )
    return [*lines, ""]


def hot_path_section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Hot path: GET /products/{id} against a bare aiohttp floor", ""]
    if data is None or not data.get("scenarios"):
        return [*lines, "No results (bench/results/hot_path.json is missing).", ""]
    scenarios = data["scenarios"]
    lines += [
        "One server process each, all pinned to the same core (wrk on another:"
        f" {'yes' if data.get('pinned') else 'no'}), on the same database and Redis: the floor"
        " (`bench/floor_server.py`: bare aiohttp + uvloop, one route answering a fixed JSON body"
        f" of {data.get('body_bytes', '?')} bytes, the size of a cached product, plus a route"
        " doing one asyncpg fetch of a product's row with the API's query); the API as deployed"
        " by default (`AUTH_MODE=api_key`, every GET sending a user's key, a read limit never"
        " reached, the access log at `LOG_LEVEL=info` written to a file) on 100 cached products"
        " of that user; and three APIs with the access layer and the access log off"
        " (`AUTH_MODE=off`, `LOG_LEVEL=warning`) on 100 others: the default cache settings"
        " (in-process tier), `LOCAL_CACHE_MAX_ITEMS=0` (Redis tier, X-Cache: HIT checked), and"
        " `LOCAL_CACHE_MAX_ITEMS=0` reading ids no cache holds (of"
        f" {data.get('miss_rows', '?')} copies of a product's row, none read twice in a run, their"
        " Redis keys deleted after each run: every request a Redis miss, a PostgreSQL read and a"
        " fill, checked by counting the fills), in a database of their own; and a fourth API"
        " like the first with"
        f" {(scenarios.get('events_hit') or {}).get('event_streams', '?')} live event streams"
        " (`GET /products/{id}/events`) held open on the products it serves, for the events"
        f" feature's cost on the cached read. `wrk -t{data.get('threads', 1)}"
        f" -c{data.get('connections', '?')}`, {data.get('rounds', '?')} interleaved rounds of"
        f" {data.get('duration_s', '?')} s per path (order alternating) after an unmeasured"
        f" {data.get('warmup_s', '?')} s warm-up. Server CPU per request is the process's user +"
        " system time from `/proc` over each run, over its requests (PostgreSQL's and Redis's"
        " own CPU not included); × floor is the median of the per-round ratios.",
        "",
        "| path | requests/s | p99 (ms) | server CPU µs/request | × floor (CPU) | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, label, target in HOT_PATHS:
        row = scenarios.get(key)
        if row is None:
            continue
        ratio = row.get("over_floor_cpu")
        wanted = "–"
        if target is not None:
            wanted = f"≤ {target}× ({_mark(ratio, target, at_most=True)})"
        lines.append(
            f"| {label} | {_num(row.get('rps'), '{:.0f}')} | {_num(row.get('p99_ms'))}"
            f" | {_num(row.get('cpu_us_per_request'), '{:.1f}')} | {_num(ratio)}× | {wanted} |"
        )
    miss = scenarios.get("miss", {})
    lines += [""]
    for key, label, _ in HOT_PATHS[1:]:
        row = scenarios.get(key)
        if row:
            lines.append(
                f"- {label}: × floor CPU per round {_rounds(row.get('over_floor_cpu_rounds'))};"
                f" requests/s {_num(row.get('over_floor_rps'))}× the floor's"
            )
    if miss:
        lines.append(
            f"- **miss / bare asyncpg fetch: {_num(miss.get('over_asyncpg_cpu'))}×** server CPU"
            f" per request (rounds: {_rounds(miss.get('over_asyncpg_cpu_rounds'))}); share of"
            f" the miss path's answers that were misses: {_num(miss.get('miss_share'))}"
        )
    discarded = data.get("discarded_rounds") or []
    lines.append(
        f"- rounds discarded and run again: {len(discarded)}"
        + (f" ({'; '.join(discarded)})" if discarded else "")
    )
    lines.append("")

    workers = data.get("workers") or {}
    if workers.get("scenarios"):
        lines += [
            f"`run_api.py --workers {workers.get('workers', '?')}` (API_WORKERS="
            f"{workers.get('workers', '?')}, unpinned, on both cores, its CPU the sum of its"
            f" {workers.get('processes', '?')} processes) against the single pinned in-process-hit"
            f" API, cached GET, `wrk -t1 -c{workers.get('connections', '?')}` unpinned,"
            f" {workers.get('rounds', '?')} interleaved rounds of {workers.get('duration_s', '?')}"
            " s:",
            "",
            "| server | requests/s | p50 (ms) | p99 (ms) | server CPU µs/request |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in workers["scenarios"].items():
            lines.append(
                f"| {name} | {_num(row.get('rps'), '{:.0f}')} | {_num(row.get('p50_ms'))}"
                f" | {_num(row.get('p99_ms'))}"
                f" | {_num(row.get('cpu_us_per_request'), '{:.1f}')} |"
            )
        lines += [
            "",
            f"Requests/s, {workers.get('workers', '?')} processes over 1:"
            f" **{_num(workers.get('scaling'))}×**"
            f" (rounds: {_rounds(workers.get('scaling_rounds'))}).",
            "",
        ]

    profile = data.get("profile") or {}
    if profile.get("error"):
        lines += [f"Profile: not taken ({profile['error']}).", ""]
    elif profile.get("self"):
        lines += [
            "Profile of the API as deployed (the in-process-hit target's) under the same load"
            f" (`{profile.get('version') or 'py-spy'} record --native --function`,"
            f" {profile.get('rate_hz', '?')} Hz for"
            f" {profile.get('duration_s', '?')} s, a run of its own at"
            f" {_num(profile.get('rps_under_profile'), '{:.0f}')} requests/s;"
            f" {profile.get('samples', '?')} samples of a busy thread). Self: the innermost frame"
            " (native frames included: syscalls, uvloop, C extensions).",
            "",
            *_profile_table(profile["self"], under=True),
            "Self by Python function (the innermost Python frame, the C it called included):",
            "",
            *_profile_table(profile.get("self_python", [])),
            "Inclusive, Python functions (anywhere in the stack; the trunk, in every sample,"
            " left out: " + ", ".join(f"`{name}`" for name in profile.get("trunk", [])) + "):",
            "",
            *_profile_table(profile.get("inclusive", [])),
        ]
    return lines


def targets_section(
    compress: dict[str, Any] | None,
    pillow: dict[str, Any] | None,
    pipeline: dict[str, Any] | None,
    throughput: dict[str, Any] | None,
    access: dict[str, Any] | None = None,
    hot_path: dict[str, Any] | None = None,
    images: dict[str, dict[str, Any] | None] | None = None,
) -> list[str]:
    compress = compress or {}
    access = access or {}
    hot = (hot_path or {}).get("scenarios") or {}
    get_hit = _scenario(throughput, "get-hit")
    floor = ((pillow or {}).get("simd") or {}).get("tjbench") or {}
    # (target, wanted, measured, threshold, at most?, unit)
    rows: list[tuple[str, str, float | None, float, bool, str]] = [
        (
            "12 MP JPEG: compress vs naive, same interpreter",
            f"≥ {COMPRESS_TARGET}×",
            compress.get("images", {}).get("jpeg-12mp", {}).get("speedup"),
            COMPRESS_TARGET,
            False,
            "×",
        ),
        (
            "12 MP JPEG: Pillow-SIMD compress vs plain-Pillow naive",
            f"≥ {PLAIN_PILLOW_TARGET}×",
            (pillow or {}).get("speedup_over_plain_naive"),
            PLAIN_PILLOW_TARGET,
            False,
            "×",
        ),
        (
            "Pool scaling, 1 → 2 processes",
            f"≥ {POOL_TARGET}×",
            compress.get("pool", {}).get("scaling"),
            POOL_TARGET,
            False,
            "×",
        ),
        (
            "tjbench floor / compress time (one core)",
            f"≥ {TJBENCH_TARGET}",
            floor.get("fraction"),
            TJBENCH_TARGET,
            False,
            "",
        ),
        (
            "Pipeline vs compress-only images/s (worker's window)",
            f"≥ {PIPELINE_TARGET}×",
            (pipeline or {}).get("ratio"),
            PIPELINE_TARGET,
            False,
            "×",
        ),
        (
            "… the same, end to end from the first POST (adds API and relay latency)",
            f"≥ {PIPELINE_TARGET}×",
            (pipeline or {}).get("end_to_end_ratio"),
            PIPELINE_TARGET,
            False,
            "×",
        ),
        (
            "Cache-hit GET vs /healthz requests/s (wrk)",
            f"≥ {GET_HIT_TARGET}×",
            get_hit.get("ratio_to_healthz") if get_hit else None,
            GET_HIT_TARGET,
            False,
            "×",
        ),
        (
            "Cache-hit GET with an API key vs AUTH_MODE=off requests/s (wrk, interleaved)",
            f"≥ {WITH_KEY_TARGET}×",
            access.get("key_over_off"),
            WITH_KEY_TARGET,
            False,
            "×",
        ),
        (
            "Cache-hit GET with an API key vs /healthz requests/s (wrk, interleaved)",
            f"≥ {WITH_KEY_HEALTHZ_TARGET}×",
            access.get("key_over_healthz"),
            WITH_KEY_HEALTHZ_TARGET,
            False,
            "×",
        ),
        (
            "In-process hit, as deployed (key checked, access log on), vs the floor server,"
            " server CPU µs/request (wrk, interleaved)",
            f"≤ {HOT_LOCAL_TARGET}×",
            (hot.get("deployed_hit") or {}).get("over_floor_cpu"),
            HOT_LOCAL_TARGET,
            True,
            "×",
        ),
        (
            "Redis-tier hit vs the floor server, server CPU µs/request (wrk, interleaved)",
            f"≤ {HOT_REDIS_TARGET}×",
            (hot.get("redis_hit") or {}).get("over_floor_cpu"),
            HOT_REDIS_TARGET,
            True,
            "×",
        ),
        (
            "In-process hit with live event streams open vs without, server CPU µs/request",
            f"≤ {EVENTS_TARGET}×",
            (hot.get("events_hit") or {}).get("over_local_hit_cpu"),
            EVENTS_TARGET,
            True,
            "×",
        ),
        (
            "p99 / p50 under load (worst scenario)",
            f"≤ {P99_TARGET}",
            _worst_p99_over_p50(throughput),
            P99_TARGET,
            True,
            "",
        ),
    ]
    lines = [
        "## Performance targets",
        "",
        "| target | wanted | measured | status |",
        "|---|---|---:|---|",
    ]
    for name, wanted, value, threshold, at_most, unit in rows:
        measured = _num(value) + (unit if value is not None else "")
        status = _mark(value, threshold, at_most=at_most)
        lines.append(f"| {name} | {wanted} | {measured} | {status} |")
    for name, wanted, value, status in images_target_rows(images or {}, pipeline_row=False):
        lines.append(f"| {name} | {wanted} | {measured_cell(value)} | {status} |")
    lines.append("")
    return lines


def main() -> int:
    api, compress, pillow = _load("api"), _load("compress"), _load("pillow")
    pipeline, throughput, access = _load("pipeline"), _load("throughput"), _load("access")
    hot_path, renditions = _load("hot_path"), _load("renditions")
    images = {"renditions": renditions, "pipeline": pipeline}
    loaded = (api, compress, pillow, pipeline, throughput, access, hot_path, renditions)
    quick = any(d.get("quick") for d in loaded if d)
    lines = [
        "# Benchmark report",
        "",
        "Timings are medians from one run on a shared machine; read the ratios, which were"
        " measured side by side in the same run."
        + (" Quick mode (BENCH_QUICK=1)." if quick else ""),
        "",
        *targets_section(compress, pillow, pipeline, throughput, access, hot_path, images),
        *api_section(api),
        *throughput_section(throughput),
        *access_section(access),
        *hot_path_section(hot_path),
        *compress_section(compress),
        *pillow_section(pillow),
        *pipeline_section(pipeline),
        *images_section(images),
    ]
    out = RESULTS / "report.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"report: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
