"""Shared fixtures of the benchmarks: the stack's settings, the quick mode and the results folder.

`scripts/bench` runs these with the stack's environment exported (POSTGRES_URL, REDIS_URL,
KAFKA_BOOTSTRAP_SERVERS); without it, the addresses come from `scripts/stack env`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Writes bench/results/<name>.json (the input of bench/report.py)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"quick": QUICK, **data}, indent=2) + "\n")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def quick() -> bool:
    return QUICK


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    names = ("POSTGRES_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    if all(os.environ.get(name) for name in names):
        return {name: os.environ[name] for name in names}
    line = subprocess.run(
        [str(ROOT / "scripts" / "stack"), "env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return dict(item.split("=", 1) for item in line.removeprefix("export ").split())


def seconds_to_compress(processes: int, data: bytes, options: Any, count: int) -> float:
    """Seconds a warmed pool of `processes` (built as the worker builds it) takes to compress
    `count` copies of `data`; process start-up and decoder imports stay outside the clock."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from compressor.compress import compress, init_worker

    with ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=init_worker,
        initargs=(options.max_pixels,),
    ) as executor:
        list(executor.map(compress, [data] * processes, [options] * processes))
        start = time.perf_counter()
        results = list(executor.map(compress, [data] * count, [options] * count))
        elapsed = time.perf_counter() - start
    assert len(results) == count
    return elapsed
