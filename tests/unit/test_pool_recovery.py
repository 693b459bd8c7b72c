"""A compression process that dies mid-job (a decoder crash, the OOM killer) breaks the executor:
the pool replaces it, runs the images that were in flight again one by one, and rejects only the
one that kills a process again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from compressor.compress import CompressedImage, CompressOptions, ImageRejected
from compressor.pool import CompressionPool
from compressor.renditions import RenditionOptions
from testkit.imagegen import photo_jpeg

ROOT = Path(__file__).resolve().parents[2]


def crash_on_poison(data: bytes, options: CompressOptions) -> CompressedImage:
    """Work for the pool's children: dies on b"poison" as a crashing decoder would."""
    if data == b"poison":
        os.kill(os.getpid(), signal.SIGKILL)
    return CompressedImage(data, 1, 1, "image/jpeg", "jpg", "JPEG", 1, 1)


def hang_on_slow(data: bytes, options: CompressOptions) -> CompressedImage:
    """Work for the pool's children: never finishes b"slow", as a pathological decode would."""
    if data == b"slow":
        threading.Event().wait()
    return CompressedImage(data, 1, 1, "image/jpeg", "jpg", "JPEG", 1, 1)


async def test_an_image_that_overruns_its_timeout_again_alone_is_rejected_as_too_slow():
    async with CompressionPool(
        processes=2, max_pixels=1000, timeout_s=0.5, work=hang_on_slow
    ) as pool:
        options = CompressOptions()
        bystanders = [f"image {n}".encode() for n in range(4)]
        slow, *others = await asyncio.gather(
            pool.compress(b"slow", options),
            *(pool.compress(data, options) for data in bystanders),
            return_exceptions=True,
        )
        assert isinstance(slow, ImageRejected)
        assert slow.reason == "too_slow"
        assert [r.data for r in others] == bystanders
        assert (await pool.compress(b"after", options)).data == b"after"


async def test_an_image_in_flight_when_a_child_is_killed_still_succeeds():
    async with CompressionPool(processes=1, max_pixels=50_000_000) as pool:
        options = RenditionOptions(sizes=(32, 64))
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would, whatever the image
        result = await pool.compress(photo_jpeg(2000, 1500), options)
        assert [max(r.width, r.height) for r in result.renditions] == [32, 64, 32, 64]
        assert pool.rebuilds == 1
        assert pool.pids() != [pid]


async def test_only_the_image_that_kills_its_process_again_alone_is_rejected():
    async with CompressionPool(processes=2, max_pixels=1000, work=crash_on_poison) as pool:
        options = CompressOptions()
        bystanders = [f"image {n}".encode() for n in range(6)]
        results = await asyncio.gather(
            pool.compress(b"poison", options),
            *(pool.compress(data, options) for data in bystanders),
            return_exceptions=True,
        )
        poison, *others = results
        assert isinstance(poison, ImageRejected)
        assert poison.reason == "crashes_decoder"
        assert [r.data for r in others] == bystanders  # none of them paid for the crash
        assert pool.rebuilds >= 1
        # The pool goes on serving.
        assert (await pool.compress(b"after", options)).data == b"after"


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
    # A zombie child of init is gone too, awaiting its reaping (or reaped meanwhile).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or the read
        return True


async def _within(seconds: float, condition: Callable[[], object], what: str) -> None:
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
            with contextlib.suppress(ProcessLookupError):  # it may have exited unreaped
                supervisor.kill()
            await supervisor.wait()
