"""A compression process killed mid-job (as the OOM killer would) breaks the executor; the pool
replaces it and the retried image succeeds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from compressor.compress import CompressOptions
from compressor.pool import CompressionPool
from tests.imagegen import photo_jpeg

ROOT = Path(__file__).resolve().parents[2]


async def test_a_killed_child_is_replaced_and_the_retry_succeeds():
    pool = CompressionPool(processes=1, max_pixels=50_000_000)
    try:
        pool.warm_up()
        options = CompressOptions(max_dimension=64)
        source = photo_jpeg(2000, 1500)
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await pool.compress(source, options)
        assert pool.rebuilds == 1
        result = await pool.compress(source, options)
        assert max(result.width, result.height) == 64
        assert pool.pids() != [pid]
    finally:
        pool.shutdown()


SUPERVISOR = """
import sys, threading
from compressor.pool import CompressionPool
pool = CompressionPool(processes=2, max_pixels=1000)
pool.warm_up()
with open(sys.argv[1], "w") as out:
    out.write(" ".join(map(str, pool.pids())))
threading.Event().wait()  # until killed
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie child of init is gone too, awaiting its reaping.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


async def _within(seconds: float, condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_pool_processes_end_with_a_supervisor_killed_without_warning(tmp_path):
    pids_file = tmp_path / "pids"
    # No pipes: the pool processes would inherit them, and outlive the test with them.
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUPERVISOR,
        str(pids_file),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,  # the killed supervisor's resource tracker complains
    )
    try:
        await _within(30, lambda: pids_file.exists() and pids_file.read_text(), "no pool started")
        children = [int(pid) for pid in pids_file.read_text().split()]
        assert len(children) == 2
        supervisor.kill()  # SIGKILL: no shutdown code runs
        await supervisor.wait()
        await _within(
            10,
            lambda: all(_gone(pid) for pid in children),
            f"pool processes outlived the supervisor: {children}",
        )
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
