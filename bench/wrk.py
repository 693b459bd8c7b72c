"""Runs `wrk` with bench/wrk_report.lua and returns the JSON line its done() hook prints.

Used by bench/test_bench_throughput.py and bench/test_bench_access.py: wrk, unlike a Python
client, is faster than the server, so rate ratios between endpoints measure the server and not
the load generator.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
MARKER = "WRK_JSON "


class WrkError(RuntimeError):
    """wrk failed, or printed no result line."""


@dataclass(frozen=True)
class CpuPlan:
    """Which CPU the server and wrk run on; both None when pinning is not possible."""

    server: int | None
    client: int | None

    @property
    def pinned(self) -> bool:
        return self.server is not None and self.client is not None

    def prefix(self, cpu: int | None) -> list[str]:
        """`taskset -c CPU` to put in front of a command, or nothing."""
        return [] if cpu is None else ["taskset", "-c", str(cpu)]


def cpu_plan() -> CpuPlan:
    """The first two CPUs this process may use, one for the server and one for wrk."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return CpuPlan(None, None)
    return CpuPlan(cpus[0], cpus[1])


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    url: str,
    script_args: list[str],
    *,
    duration_s: int,
    connections: int,
    threads: int = 1,
    cpu_prefix: list[str] | None = None,
    timeout_s: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Runs wrk against `url` (scheme, host and port) with bench/wrk_report.lua and `script_args`
    (see the script's header) and returns the parsed result line, plus wrk's raw output.
    `headers` go with every request (wrk -H), e.g. an API key's Authorization."""
    wrk = wrk_path()
    if wrk is None:
        raise WrkError("wrk is not installed")

    def command_with(header_values: list[str]) -> list[str]:
        return [
            *(cpu_prefix or []),
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            f"--timeout={timeout_s:g}s",
            "--latency",
            *(arg for value in header_values for arg in ("-H", value)),
            "-s",
            str(SCRIPT),
            url,
            "--",
            *script_args,
        ]

    command = command_with([f"{name}: {value}" for name, value in (headers or {}).items()])
    # Error messages show the command without the header values (a key is a credential).
    shown = command_with([f"{name}: …" for name in (headers or {})])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 30} s: {shown}") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or len(lines) != 1:
        raise WrkError(
            f"wrk failed (exit status {done.returncode}): {shown}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    result: dict[str, Any] = json.loads(lines[0].removeprefix(MARKER))
    result["socket_errors"] = sum(
        result[name] for name in ("connect_errors", "read_errors", "write_errors", "timeout_errors")
    )
    result["errors"] = result["status_errors"] + result["socket_errors"]
    result["statuses"] = {int(status): count for status, count in result["statuses"].items()}
    result["output"] = done.stdout
    return result


def summary_of_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's interleaved rounds together: requests/s over all of them, the per-round
    rates, median latencies and CPU per request (each run's `cpu_us_per_request`, which the
    caller measured around it), errors summed."""
    requests = sum(run["requests"] for run in runs)
    seconds = sum(run["duration_s"] for run in runs)
    return {
        "rps": requests / seconds if seconds else 0.0,
        "round_rps": [run["rps"] for run in runs],
        "p50_ms": statistics.median(run["p50_ms"] for run in runs),
        "p99_ms": statistics.median(run["p99_ms"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "cpu_us_per_request": statistics.median(run["cpu_us_per_request"] for run in runs),
        "round_cpu_us_per_request": [run["cpu_us_per_request"] for run in runs],
    }
